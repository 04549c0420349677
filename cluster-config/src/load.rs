//! Reading a config directory: every `*.yaml` file, `${VAR}` / `${VAR:-default}`
//! substituted in the raw text, parsed with the `config` crate, unknown keys
//! reported, files merged (a service, a route id, or a single-instance section such
//! as `node` or `auth` defined twice is an error naming both files), then everything
//! validated in one pass.

use crate::de::{typed, typed_entries, typed_items, Tree};
use crate::error::ConfigError;
use crate::gateway::Gateway;
use crate::node::{
    AdminSection, ClusterSection, LogSection, NodeConfig, NodeSection, NodeSections,
};
use crate::schema::{AuthSpec, GatewaySpec, RateLimitSpec, RouteSpec, ServiceSpec, WebhooksSpec};
use crate::validate::Reported;
use crate::ConfigErrors;
use config::Source;
use serde::de::Deserializer;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A directory loaded and validated: what `sluice run` starts from and SIGHUP swaps.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub dir: PathBuf,
    pub node: NodeConfig,
    pub gateway: Gateway,
    pub origins: Origins,
}

/// Where each merged entity came from, so validation errors can name the file and
/// the index inside *that* file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// service name -> file
    pub services: BTreeMap<String, String>,
    /// merged route index -> (file, index within that file)
    pub routes: Vec<(String, usize)>,
    /// merged rate-limit index -> (file, index within that file)
    pub rate_limits: Vec<(String, usize)>,
    /// file holding the `auth` section
    pub auth: Option<String>,
}

/// Loads every `*.yaml` (and `*.yml`) in `dir` (sorted by name), merges and
/// validates them. All problems found are returned together.
pub fn load_dir(dir: &Path) -> Result<LoadedConfig, ConfigErrors> {
    load_dir_with_env(dir, &|name| std::env::var(name).ok())
}

/// [`load_dir`] with `${VAR}` resolved by `lookup` instead of the process
/// environment (tests, and callers that hold their own variables).
pub fn load_dir_with_env(
    dir: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<LoadedConfig, ConfigErrors> {
    let files = yaml_files(dir)?;
    let mut errors = Vec::new();
    let mut merged = Merged::default();
    for (name, path) in files {
        let file = Some(name.as_str());
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                errors.push(ConfigError::new(file, "", format!("cannot read file: {e}")));
                merged.reported.files = true;
                continue;
            }
        };
        let text = match substitute_env(&text, lookup) {
            Ok(text) => text,
            Err(msg) => {
                errors.push(ConfigError::new(file, "", msg));
                merged.reported.files = true;
                continue;
            }
        };
        let root = match parse_yaml(&text) {
            Ok(root) => root,
            Err(msg) => {
                errors.push(ConfigError::new(file, "", msg));
                merged.reported.files = true;
                continue;
            }
        };
        let sections = file_sections(root, &name, &mut errors);
        merged.add(name, sections, &mut errors);
    }

    let node = merged.node.build(dir, &mut errors);
    match crate::validate::compile(merged.spec, &merged.origins, Some(dir), &merged.reported) {
        Ok(gateway) if errors.is_empty() => Ok(LoadedConfig {
            dir: dir.to_path_buf(),
            node,
            gateway,
            origins: merged.origins,
        }),
        Ok(_) => Err(ConfigErrors(errors)),
        Err(more) => {
            errors.extend(more.0);
            Err(ConfigErrors(errors))
        }
    }
}

/// The `*.yaml` / `*.yml` files of `dir`, sorted by name, each with the name errors
/// use for it (`dir.join(name)` as displayed).
fn yaml_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, ConfigErrors> {
    let dir_name = dir.display().to_string();
    let fail = |msg: String| ConfigErrors(vec![ConfigError::new(Some(&dir_name), "", msg)]);
    let entries =
        std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read config directory: {e}")))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| fail(format!("cannot read config directory: {e}")))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = dir.join(&name);
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // `is_file` follows symlinks, so linked files (e.g. a mounted ConfigMap) count.
        if is_yaml && path.is_file() {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(fail(
            "no *.yaml or *.yml files in config directory".to_owned(),
        ));
    }
    names.sort();
    Ok(names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            (path.display().to_string(), path)
        })
        .collect())
}

/// Parses one file's text with the `config` crate into its top-level entries.
fn parse_yaml(text: &str) -> Result<Vec<(String, config::Value)>, String> {
    let cfg = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .build()
        .map_err(|e| format!("invalid YAML: {e}"))?;
    let root = cfg.collect().map_err(|e| format!("invalid YAML: {e}"))?;
    let mut entries: Vec<_> = root.into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// The sections a file may hold; every one optional.
#[derive(Default)]
struct FileSections {
    node: Option<NodeSection>,
    cluster: Option<ClusterSection>,
    admin: Option<AdminSection>,
    log: Option<LogSection>,
    /// `None` entries could not be read at all (already reported).
    services: Vec<(String, Option<ServiceSpec>)>,
    routes: Vec<Option<RouteSpec>>,
    rate_limits: Vec<Option<RateLimitSpec>>,
    auth: Option<AuthSpec>,
    webhooks: Option<WebhooksSpec>,
    /// Single-owner sections written in this file, even if they failed to parse.
    present: Vec<&'static str>,
    /// Key paths of values replaced by stand-ins (see `de.rs`); already reported.
    stand_ins: Vec<String>,
}

/// Sections a config may define in one file only.
const SINGLE_SECTIONS: [&str; 6] = ["node", "cluster", "admin", "log", "auth", "webhooks"];

const FILE_SECTIONS: &str =
    "node, cluster, admin, log, services, routes, rate_limits, auth, webhooks";
const API_SECTIONS: &str = "services, routes, rate_limits, auth, webhooks";

/// A section that may be written as an empty key (`auth:`), meaning "all defaults".
fn optional_section<T, V>(
    value: V,
    key: &str,
    file: Option<&str>,
    errors: &mut Vec<ConfigError>,
    stand_ins: &mut Vec<String>,
) -> Option<T>
where
    T: serde::de::DeserializeOwned + Default,
    V: Tree + for<'de> Deserializer<'de, Error = <V as Tree>::Error>,
{
    if value.is_null() {
        return Some(T::default());
    }
    // serde reads a struct from a list too (fields in order): a section is a map.
    if !value.is_map() {
        errors.push(ConfigError::new(file, key, "expected a map".to_owned()));
        return None;
    }
    typed(value, key, file, errors, stand_ins)
}

fn file_sections(
    root: Vec<(String, config::Value)>,
    file: &str,
    errors: &mut Vec<ConfigError>,
) -> FileSections {
    let mut s = FileSections::default();
    let stood = &mut s.stand_ins;
    let f = Some(file);
    for (key, value) in root {
        // Single-instance sections are remembered so a second file defining one
        // can be reported with both names.
        if let Some(name) = SINGLE_SECTIONS.iter().find(|n| **n == key) {
            s.present.push(name);
        }
        match key.as_str() {
            "node" => s.node = optional_section(value, "node", f, errors, stood),
            "cluster" => s.cluster = optional_section(value, "cluster", f, errors, stood),
            "admin" => s.admin = optional_section(value, "admin", f, errors, stood),
            "log" => s.log = optional_section(value, "log", f, errors, stood),
            "auth" => s.auth = optional_section(value, "auth", f, errors, stood),
            "webhooks" => s.webhooks = optional_section(value, "webhooks", f, errors, stood),
            "services" => s.services = typed_entries(value, "services", f, errors, stood),
            "routes" => s.routes = typed_items(value, "routes", f, errors, stood),
            "rate_limits" => s.rate_limits = typed_items(value, "rate_limits", f, errors, stood),
            _ => errors.push(ConfigError::new(
                f,
                key,
                format!("unknown key (expected one of: {FILE_SECTIONS})"),
            )),
        }
    }
    s
}

/// The files merged so far.
#[derive(Default)]
struct Merged {
    spec: GatewaySpec,
    origins: Origins,
    node: NodeSections,
    /// Single-owner section -> the file that defined it.
    owners: BTreeMap<&'static str, String>,
    /// What failed to parse, so neither it nor its knock-on effects are reported
    /// again by validation.
    reported: Reported,
}

impl Merged {
    fn add(&mut self, file: String, s: FileSections, errors: &mut Vec<ConfigError>) {
        self.reported
            .stand_ins
            .extend(s.stand_ins.into_iter().map(|path| (file.clone(), path)));
        let mut owned_here = BTreeSet::new();
        for section in s.present {
            match self.owners.get(section) {
                Some(other) => errors.push(ConfigError::new(
                    Some(&file),
                    section,
                    format!("section {section:?} is already defined in {other}"),
                )),
                None => {
                    self.owners.insert(section, file.clone());
                    owned_here.insert(section);
                }
            }
        }
        let mine = |name: &str| owned_here.contains(name);
        if mine("node") {
            self.node.node = s.node.map(|v| (file.clone(), v));
        }
        if mine("cluster") {
            self.node.cluster = s.cluster.map(|v| (file.clone(), v));
        }
        if mine("admin") {
            self.node.admin = s.admin.map(|v| (file.clone(), v));
        }
        if mine("log") {
            self.node.log = s.log.map(|v| (file.clone(), v));
        }
        if mine("auth") {
            if let Some(auth) = s.auth {
                self.spec.auth = auth;
            }
            self.origins.auth = Some(file.clone());
        }
        if mine("webhooks") {
            if let Some(webhooks) = s.webhooks {
                self.spec.webhooks = webhooks;
            }
        }
        for (name, service) in s.services {
            if let Some(other) = self.origins.services.get(&name) {
                errors.push(ConfigError::new(
                    Some(&file),
                    format!("services.{name}"),
                    format!("service {name:?} is already defined in {other}"),
                ));
                continue;
            }
            self.origins.services.insert(name.clone(), file.clone());
            match service {
                Some(service) => {
                    self.spec.services.insert(name, service);
                }
                None => {
                    self.reported.services.insert(name);
                }
            }
        }
        for (j, route) in s.routes.into_iter().enumerate() {
            if let Some(route) = route {
                self.spec.routes.push(route);
                self.origins.routes.push((file.clone(), j));
            }
        }
        for (j, limit) in s.rate_limits.into_iter().enumerate() {
            if let Some(limit) = limit {
                self.spec.rate_limits.push(limit);
                self.origins.rate_limits.push((file.clone(), j));
            }
        }
    }
}

/// Parses a gateway spec sent as JSON (admin API). Unknown keys are errors.
pub fn parse_gateway_json(body: &[u8]) -> Result<GatewaySpec, ConfigErrors> {
    let one = |msg: String| ConfigErrors(vec![ConfigError::new(None, "", msg)]);
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| one(format!("invalid JSON: {e}")))?;
    let entries = value
        .into_entries()
        .map_err(|_| one("expected a JSON object".to_owned()))?;
    let mut errors = Vec::new();
    // Validation does not run on a spec with type errors here, so the stand-ins that
    // let every type error of an entry be found need no further bookkeeping.
    let stood = &mut Vec::new();
    let mut spec = GatewaySpec::default();
    let mut complete = true;
    for (key, value) in entries {
        match key.as_str() {
            "services" => {
                for (name, service) in typed_entries(value, "services", None, &mut errors, stood) {
                    match service {
                        Some(service) => {
                            spec.services.insert(name, service);
                        }
                        None => complete = false,
                    }
                }
            }
            "routes" => {
                let items = typed_items(value, "routes", None, &mut errors, stood);
                complete &= items.iter().all(Option::is_some);
                spec.routes = items.into_iter().flatten().collect();
            }
            "rate_limits" => {
                let items = typed_items(value, "rate_limits", None, &mut errors, stood);
                complete &= items.iter().all(Option::is_some);
                spec.rate_limits = items.into_iter().flatten().collect();
            }
            "auth" => match optional_section(value, "auth", None, &mut errors, stood) {
                Some(auth) => spec.auth = auth,
                None => complete = false,
            },
            "webhooks" => match optional_section(value, "webhooks", None, &mut errors, stood) {
                Some(webhooks) => spec.webhooks = webhooks,
                None => complete = false,
            },
            _ => errors.push(ConfigError::new(
                None,
                key,
                format!("unknown key (expected one of: {API_SECTIONS})"),
            )),
        }
    }
    if errors.is_empty() && complete {
        Ok(spec)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Substitutes `${VAR}` and `${VAR:-default}` using `lookup`. An unset variable
/// without a default is an error naming it; `$$` is a literal `$`.
///
/// As in a shell, the default also replaces a variable that is set but empty. A `$`
/// not followed by `$` or `{` is kept as is. Every problem in the text is reported
/// (joined by `; `), each with its line.
pub fn substitute_env(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let line = 1 + text[..text.len() - rest.len() + pos].matches('\n').count();
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let Some(end) = inner.find('}') else {
                problems.push(format!("line {line}: unterminated \"${{\""));
                rest = "";
                break;
            };
            let body = &inner[..end];
            rest = &inner[end + 1..];
            let (name, default) = match body.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (body, None),
            };
            if !is_var_name(name) {
                problems.push(format!(
                    "line {line}: invalid variable name {name:?} in \"${{{body}}}\""
                ));
                continue;
            }
            match (lookup(name), default) {
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => problems.push(format!(
                    "line {line}: environment variable {name} is not set"
                )),
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("; "))
    }
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn compile_gateway(
    spec: GatewaySpec,
    origins: &Origins,
    config_dir: Option<&Path>,
) -> Result<Gateway, ConfigErrors> {
    crate::validate::compile(spec, origins, config_dir, &Reported::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::{JwtAlg, JwtKeyMaterial, RateLimitEndpoint, RateLimitScope};
    use crate::node::LogFormat;
    use crate::routes::RouteMatch;
    use crate::testutil::{assert_has, test_env, TestDir, TEST_EC_PEM, TEST_PEM};
    use std::time::Duration;

    const USER_SERVICE: &str = "
services:
  user-service:
    upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
";

    fn load(dir: &TestDir) -> LoadedConfig {
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => cfg,
            Err(e) => panic!("expected the config to load, got:\n{e}"),
        }
    }

    fn load_err(dir: &TestDir) -> ConfigErrors {
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(_) => panic!("expected errors"),
            Err(e) => {
                assert!(!e.0.is_empty());
                e
            }
        }
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn seed_examples_load_as_written() {
        let dir = TestDir::with(&[
            ("services.yaml", USER_SERVICE),
            (
                "users.yaml",
                "
routes:
  - path: /api/v1/users
    service: user-service
    methods: [GET, POST]
  - path: /api/v1/users/:id
    service: user-service
    methods: [GET, PUT, DELETE]
",
            ),
            (
                "limits.yaml",
                "
rate_limits:
  - endpoint: /api/v1/search
    limit: 100
    window: 60s
    scope: user
  - endpoint: /api/v1/*
    limit: 1000
    window: 60s
    scope: ip
",
            ),
        ]);
        let cfg = load(&dir);
        let gw = &cfg.gateway;
        assert_eq!(gw.routes.routes().len(), 2);
        match gw.routes.lookup(&http::Method::PUT, "/api/v1/users/7") {
            RouteMatch::Found(r) => assert_eq!(r.id, "/api/v1/users/:id"),
            other => panic!("{other:?}"),
        }
        match gw.routes.lookup(&http::Method::PATCH, "/api/v1/users") {
            RouteMatch::MethodNotAllowed(allow) => assert_eq!(allow, "GET, HEAD, POST"),
            other => panic!("{other:?}"),
        }
        // /api/v1/search is not a route but may still be limited: the seed loads.
        assert_eq!(gw.rate_limits.len(), 2);
        assert_eq!(
            gw.rate_limits[0].endpoint,
            RateLimitEndpoint::Path("/api/v1/search".to_owned())
        );
        assert_eq!(
            gw.rate_limits[1].endpoint,
            RateLimitEndpoint::Prefix("/api/v1/".to_owned())
        );
        assert_eq!(gw.rate_limits[1].scope, RateLimitScope::Ip);
        assert_eq!(gw.rate_limits[0].window, Duration::from_secs(60));
        // Files are read in name order: limits, services, users.
        assert_eq!(cfg.origins.routes[1], (dir.file("users.yaml"), 1));
        assert_eq!(
            cfg.origins.services.get("user-service"),
            Some(&dir.file("services.yaml"))
        );
        // No node sections: defaults.
        assert_eq!(cfg.node.id, 1);
        assert_eq!(cfg.node.listen.to_string(), "0.0.0.0:8080");
        assert!(cfg.node.peers.is_empty());
    }

    const CONTRACT_GATEWAY: &str = r#"
services:
  user-service:
    upstreams: [http://127.0.0.1:9001, http://127.0.0.1:9002]
    load_balancing: round_robin          # or least_requests
    timeout: 30s
    circuit_breaker: { error_rate: 0.5, window: 60s, min_requests: 20,
                       consecutive_failures: 5, open_for: 30s, close_after: 2 }
    health_check: { path: /health, interval: 5s }
routes:
  - path: /api/v1/users                  # exact; `id` defaults to the path
    service: user-service
    methods: [GET, POST]
  - id: user-by-id                       # needed when two routes share a path
    path: /api/v1/users/:id              # param
    service: user-service
    methods: [GET, PUT, DELETE]
    auth: jwt                            # none | jwt | api_key | any (default: any)
    roles: [admin]                       # 403 unless the caller has one of them
  - path: /static/*                      # wildcard
    service: user-service
    auth: none
rate_limits:
  - endpoint: /api/v1/search             # a route path, or a path ending in /*
    limit: 100
    window: 60s
    scope: user                          # user | ip | endpoint | client
    algorithm: sliding_window            # or token_bucket (with burst)
auth:
  jwt:
    issuer: https://id.example.com       # checked when set
    audience: sluice                     # checked when set
    leeway: 30s
    keys:
      - { kid: rsa1, alg: RS256, public_key_file: keys/rsa1.pub.pem }
      - { kid: hs1,  alg: HS256, secret: "${JWT_HS256_SECRET}" }
  oauth:
    token_ttl: 1h
    token_endpoint_limit: 10/min         # per client, cluster-wide
"#;

    const CONTRACT_NODE: &str = "
node:
  id: 1                          # unique, > 0
  listen: 0.0.0.0:8080           # data plane, HTTP/1.1 + HTTP/2 (h2c or TLS+ALPN)
  admin_listen: 127.0.0.1:9080   # admin API, Raft RPC, admin console
  data_dir: ./data/node-1        # sled files
  workers: 2                     # data-plane worker threads (default: one per core)
  shutdown_timeout: 30s
  tls: { cert_file: tls/cert.pem, key_file: tls/key.pem }   # optional, enables HTTPS + h2
cluster:
  peers: { 1: 10.0.0.1:9080, 2: 10.0.0.2:9080, 3: 10.0.0.3:9080 }  # omit: single node
  secret: ${SLUICE_CLUSTER_SECRET}         # required when peers has more than one node
admin:
  token: ${SLUICE_ADMIN_TOKEN}             # bootstrap admin token
log:
  format: json
  level: info,sluice=debug
";

    #[test]
    fn contract_example_loads() {
        let dir = TestDir::with(&[
            ("gateway.yaml", CONTRACT_GATEWAY),
            ("node.yaml", CONTRACT_NODE),
            ("keys/rsa1.pub.pem", TEST_PEM),
            ("tls/cert.pem", "cert"),
            ("tls/key.pem", "key"),
        ]);
        let cfg = load(&dir);

        let node = &cfg.node;
        assert_eq!(node.id, 1);
        assert_eq!(node.admin_listen.to_string(), "127.0.0.1:9080");
        assert_eq!(node.data_dir, PathBuf::from("./data/node-1"));
        assert_eq!(node.workers, 2);
        assert_eq!(node.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(node.upstream_pool_limit, 512);
        let tls = node.tls.as_ref().expect("tls");
        assert_eq!(tls.cert_file, dir.path().join("tls/cert.pem"));
        assert_eq!(tls.key_file, dir.path().join("tls/key.pem"));
        assert_eq!(node.peers.len(), 3);
        assert_eq!(
            node.peers.get(&2).map(String::as_str),
            Some("10.0.0.2:9080")
        );
        assert_eq!(node.cluster_secret.as_deref(), Some("cluster-secret"));
        assert_eq!(node.admin_token.as_deref(), Some("admin-token"));
        assert_eq!(node.log_format, LogFormat::Json);
        assert_eq!(node.log_level, "info,sluice=debug");

        let gw = &cfg.gateway;
        let svc = &gw.services["user-service"];
        assert_eq!(svc.upstreams[1].authority, "127.0.0.1:9002");
        assert_eq!(svc.circuit_breaker, crate::CircuitBreakerConfig::default());
        let hc = svc.health_check.as_ref().expect("health check");
        assert_eq!(
            (hc.interval, hc.timeout),
            (Duration::from_secs(5), Duration::from_secs(2))
        );
        assert_eq!((hc.healthy_after, hc.unhealthy_after), (2, 3));

        let by_id = gw.routes.routes().iter().find(|r| r.id == "user-by-id");
        let by_id = by_id.expect("route user-by-id");
        assert_eq!(by_id.auth, crate::AuthMode::Jwt);
        assert_eq!(by_id.roles, ["admin"]);
        match gw.routes.lookup(&http::Method::GET, "/static") {
            RouteMatch::Found(r) => assert_eq!(r.auth, crate::AuthMode::None),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            gw.rate_limits[0].endpoint,
            RateLimitEndpoint::Path("/api/v1/search".to_owned())
        );

        let jwt = gw.jwt.as_ref().expect("jwt");
        assert_eq!(jwt.leeway, Duration::from_secs(30));
        assert_eq!(jwt.keys[0].alg, JwtAlg::RS256);
        assert_eq!(
            jwt.keys[0].material,
            JwtKeyMaterial::RsaPublicPem(TEST_PEM.to_owned())
        );
        assert_eq!(
            jwt.keys[1].material,
            JwtKeyMaterial::HmacSecret("hs-secret-from-env".to_owned())
        );
        assert!(
            !format!("{jwt:?}").contains("hs-secret-from-env"),
            "secret in Debug"
        );
        assert_eq!(gw.oauth.token_ttl, Duration::from_secs(3600));
        let quota = gw.oauth.token_endpoint_limit.expect("quota");
        assert_eq!((quota.count, quota.per), (10, Duration::from_secs(60)));
        // Settings the contract example does not write: their defaults.
        assert_eq!(gw.oauth.issuer, "sluice");
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.max_token_bytes, 8192);
        assert!(gw
            .routes
            .routes()
            .iter()
            .all(|r| !r.forward_credentials && !r.allow_encoded_slashes));

        // The key file is inlined so the spec can be replicated as is.
        let key = &gw.spec.auth.jwt.as_ref().expect("jwt spec").keys[0];
        assert_eq!(key.public_key_file, None);
        assert_eq!(key.public_key.as_deref(), Some(TEST_PEM));
    }

    #[test]
    fn spec_round_trips_through_the_api() {
        let dir = TestDir::with(&[
            ("gateway.yaml", CONTRACT_GATEWAY),
            ("keys/rsa1.pub.pem", TEST_PEM),
        ]);
        let cfg = load(&dir);
        let body = serde_json::to_vec(&cfg.gateway.spec).expect("serialize");
        let spec = match parse_gateway_json(&body) {
            Ok(spec) => spec,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(spec, cfg.gateway.spec);
        let gw = match crate::Gateway::compile(spec, &Origins::default(), None) {
            Ok(gw) => gw,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(gw.jwt, cfg.gateway.jwt);
        assert_eq!(gw.services, cfg.gateway.services);
    }

    /// The README's example of the settings added for authentication (keep the two
    /// in step).
    const README_AUTH: &str = r#"
services:
  user-service:
    upstreams: [http://127.0.0.1:9001]
routes:
  - path: /api/v1/admin/*
    service: user-service
    auth: any                      # none | jwt | api_key | any (default: any)
    roles: [admin]
    forward_credentials: false     # pass Authorization / X-API-Key upstream (default false)
    allow_encoded_slashes: false   # accept %2F / %5C in the path (default false: 400)
  - path: /files/*
    service: user-service
    auth: none
    allow_encoded_slashes: true
auth:
  jwt:
    roles_claim: roles             # array or space-separated string (default roles)
    max_token_bytes: 8192          # longer bearer tokens are refused (default 8192)
    keys:
      - { kid: ec1, alg: ES256, public_key_file: keys/ec1.pub.pem }
  oauth:
    issuer: sluice                 # `iss` of the tokens the cluster issues (default sluice)
    token_endpoint_limit: 10/min   # per client (default 10/min); `unlimited` turns it off
"#;

    #[test]
    fn readme_auth_example_loads_and_round_trips() {
        let dir = TestDir::with(&[
            ("gateway.yaml", README_AUTH),
            ("keys/ec1.pub.pem", TEST_EC_PEM),
        ]);
        let cfg = load(&dir);
        let gw = &cfg.gateway;
        let route = |id: &str| gw.routes.routes().iter().find(|r| r.id == id).cloned();
        let admin = route("/api/v1/admin/*").expect("admin route");
        assert_eq!(
            (admin.forward_credentials, admin.allow_encoded_slashes),
            (false, false)
        );
        let files = route("/files/*").expect("files route");
        assert_eq!(
            (files.forward_credentials, files.allow_encoded_slashes),
            (false, true)
        );
        let jwt = gw.jwt.as_ref().expect("jwt");
        assert_eq!(
            (jwt.roles_claim.as_str(), jwt.max_token_bytes),
            ("roles", 8192)
        );
        assert_eq!(jwt.keys[0].alg, JwtAlg::ES256);
        assert_eq!(
            jwt.keys[0].material,
            JwtKeyMaterial::EcPublicPem(TEST_EC_PEM.to_owned())
        );
        assert_eq!(gw.oauth, crate::OAuthConfig::default());

        // Over the API: the same spec, the same compiled config.
        let body = serde_json::to_vec(&gw.spec).expect("serialize");
        let spec = match parse_gateway_json(&body) {
            Ok(spec) => spec,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(spec, gw.spec);
        let again = match crate::Gateway::compile(spec, &Origins::default(), None) {
            Ok(again) => again,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(again.jwt, gw.jwt);
        assert_eq!(again.oauth, gw.oauth);
        assert_eq!(again.routes.routes(), gw.routes.routes());
    }

    /// `GatewaySpec` is replicated and stored: a setting nobody wrote must not
    /// appear in its JSON, so specs written before it existed read back unchanged.
    #[test]
    fn unset_settings_stay_out_of_the_json() {
        let dir = TestDir::with(&[
            ("gateway.yaml", CONTRACT_GATEWAY),
            ("keys/rsa1.pub.pem", TEST_PEM),
        ]);
        let cfg = load(&dir);
        let json = serde_json::to_value(&cfg.gateway.spec).expect("serialize");
        for route in json["routes"].as_array().expect("routes") {
            let keys: Vec<&String> = route.as_object().expect("route").keys().collect();
            assert!(
                !keys
                    .iter()
                    .any(|k| *k == "forward_credentials" || *k == "allow_encoded_slashes"),
                "{keys:?}"
            );
        }
        let jwt = json["auth"]["jwt"].as_object().expect("jwt");
        assert!(!jwt.contains_key("roles_claim") && !jwt.contains_key("max_token_bytes"));
        let oauth = json["auth"]["oauth"].as_object().expect("oauth");
        let keys: Vec<&String> = oauth.keys().collect();
        assert_eq!(keys, ["token_endpoint_limit", "token_ttl"]);
    }

    #[test]
    fn json_type_errors_of_the_auth_settings() {
        let body = br#"{
            "services": { "s": { "upstreams": ["http://h:1"] } },
            "routes": [ { "path": "/x", "service": "s", "forward_credentials": "yes",
                          "allow_encoded_slashes": 1 } ],
            "auth": { "jwt": { "roles_claim": 5, "max_token_bytes": "8k",
                               "keys": [ { "kid": "h", "alg": "HS256", "secret": "s" } ] },
                      "oauth": { "issuer": false } }
        }"#;
        let e = match parse_gateway_json(body) {
            Err(e) => e,
            Ok(spec) => match crate::Gateway::compile(spec, &Origins::default(), None) {
                Err(e) => e,
                Ok(_) => panic!("accepted"),
            },
        };
        for path in [
            "routes[0].forward_credentials",
            "routes[0].allow_encoded_slashes",
            "auth.jwt.roles_claim",
            "auth.jwt.max_token_bytes",
            "auth.oauth.issuer",
        ] {
            assert_has(&e, None, path, "invalid type");
        }
        assert_eq!(e.0.len(), 5, "{e}");
    }

    /// The `config` crate must not lowercase keys or split map keys: service names,
    /// route-independent map keys and numeric peer ids survive as written.
    #[test]
    fn map_keys_survive_as_written() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "
services:
  user-service: { upstreams: [http://a:1] }
  User-Service: { upstreams: [http://b:1] }
  USER_SVC: { upstreams: [http://c:1] }
  api.v1: { upstreams: [http://d:1] }
  '42': { upstreams: [http://e:1] }
routes:
  - { path: /a, service: User-Service }
  - { path: /b, service: api.v1 }
node: { id: 2 }
cluster:
  peers:
    1: 10.0.0.1:9080
    2: peer-two.internal:9080
    10: '[::1]:9080'
  secret: s
",
        )]);
        let cfg = load(&dir);
        let names: Vec<&str> = cfg.gateway.services.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["42", "USER_SVC", "User-Service", "api.v1", "user-service"]
        );
        assert_eq!(
            cfg.gateway.services["User-Service"].upstreams[0].authority,
            "b:1"
        );
        let peers: Vec<u64> = cfg.node.peers.keys().copied().collect();
        assert_eq!(peers, [1, 2, 10]);
        assert_eq!(cfg.node.peers[&10], "[::1]:9080");
    }

    #[test]
    fn yml_files_are_read_in_name_order_and_others_ignored() {
        let dir = TestDir::with(&[
            ("b.yml", "routes: [{ path: /b, service: s }]"),
            (
                "a.yaml",
                "services: { s: { upstreams: [http://s:1] } }\nroutes: [{ path: /a, service: s }]",
            ),
            ("notes.txt", "not: [yaml"),
            ("c.yaml.bak", "not: [yaml"),
        ]);
        let cfg = load(&dir);
        let ids: Vec<&str> = cfg
            .gateway
            .routes
            .routes()
            .iter()
            .map(|r| r.id.as_str())
            .collect();
        assert_eq!(ids, ["/a", "/b"]);
        assert_eq!(
            cfg.origins.routes,
            [(dir.file("a.yaml"), 0), (dir.file("b.yml"), 0)]
        );
    }

    #[test]
    fn missing_empty_and_yaml_less_dirs_are_errors() {
        let dir = TestDir::new();
        let missing = dir.path().join("nope");
        let e = match load_dir(&missing) {
            Err(e) => e,
            Ok(_) => panic!("loaded a missing dir"),
        };
        assert_has(
            &e,
            Some(&missing.display().to_string()),
            "",
            "cannot read config directory",
        );

        let e = load_err(&dir);
        assert_has(
            &e,
            Some(&dir.path().display().to_string()),
            "",
            "no *.yaml or *.yml files",
        );

        dir.write("README.md", "# config");
        let e = load_err(&dir);
        assert_has(
            &e,
            Some(&dir.path().display().to_string()),
            "",
            "no *.yaml or *.yml files",
        );
    }

    #[test]
    fn every_unknown_key_in_a_file_is_reported() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "
servces: {}
services:
  s:
    upstreams: [http://s:1]
    timout: 3s
    circuit_breaker: { error_rate: 0.5, eror_rate: 0.1 }
routes:
  - { path: /a, service: s, method: [GET] }
  - { path: /b, service: s }
  - { path: /c, service: s, auth: none, extra: { deep: 1 } }
node: { id: 1, port: 8080 }
auth: { jwt: { keys: [{ kid: k, alg: HS256, secret: x, sekret: y }] } }
",
        )]);
        let e = load_err(&dir);
        let f = dir.file("a.yaml");
        let f = Some(f.as_str());
        assert_has(
            &e,
            f,
            "servces",
            "unknown key (expected one of: node, cluster",
        );
        assert_has(&e, f, "services.s.timout", "unknown key");
        assert_has(&e, f, "services.s.circuit_breaker.eror_rate", "unknown key");
        assert_has(&e, f, "routes[0].method", "unknown key");
        assert_has(&e, f, "routes[2].extra", "unknown key");
        assert_has(&e, f, "node.port", "unknown key");
        assert_has(&e, f, "auth.jwt.keys[0].sekret", "unknown key");
        assert_eq!(e.0.len(), 7, "{e}");
    }

    #[test]
    fn type_errors_name_their_key_path_and_do_not_hide_others() {
        let dir = TestDir::with(&[
            ("s.yaml", USER_SERVICE),
            (
                "a.yaml",
                "
routes:
  - { path: /a, service: user-service, methods: GET }
  - { path: /b }
  - { path: /c, service: user-svc }
rate_limits:
  - { endpoint: /a, limit: lots, window: 1s, scope: ip }
node: { id: one }
",
            ),
        ]);
        let e = load_err(&dir);
        let f = dir.file("a.yaml");
        let f = Some(f.as_str());
        assert_has(&e, f, "routes[0].methods", "invalid type");
        assert_has(&e, f, "routes[1]", "missing field `service`");
        assert_has(&e, f, "rate_limits[0].limit", "invalid type");
        assert_has(&e, f, "node.id", "invalid type");
        // Validation still runs on what parsed, at the index within the file.
        assert_has(&e, f, "routes[2].service", "unknown service \"user-svc\"");
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn json_reports_every_type_error_of_an_entry() {
        let body = br#"{
            "rate_limits": [ { "endpoint": "/x", "limit": "abc", "window": 5, "scope": "ip", "burst": -1 } ],
            "routes": [ { "path": "/a", "methods": "GET", "timeout": 5, "roles": ["a", 1] } ],
            "auth": { "jwt": { "leeway": 30, "keys": [ { "alg": "HS256" } ] } }
        }"#;
        let e = match parse_gateway_json(body) {
            Err(e) => e,
            Ok(spec) => panic!("parsed: {spec:?}"),
        };
        assert_has(
            &e,
            None,
            "rate_limits[0].limit",
            "invalid type: string \"abc\"",
        );
        assert_has(
            &e,
            None,
            "rate_limits[0].window",
            "invalid type: integer `5`",
        );
        assert_has(
            &e,
            None,
            "rate_limits[0].burst",
            "invalid value: integer `-1`",
        );
        assert_has(&e, None, "routes[0]", "missing field `service`");
        assert_has(&e, None, "routes[0].methods", "invalid type");
        assert_has(&e, None, "routes[0].timeout", "invalid type");
        assert_has(&e, None, "routes[0].roles[1]", "invalid type");
        assert_has(&e, None, "auth.jwt.leeway", "invalid type");
        assert_has(&e, None, "auth.jwt.keys[0]", "missing field `kid`");
        assert_eq!(e.0.len(), 9, "{e}");
    }

    #[test]
    fn sections_of_the_wrong_shape() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "services: [a, b]\nroutes: { path: /a }\nnode: 3\nauth: [null]\n",
        )]);
        let e = load_err(&dir);
        let f = dir.file("a.yaml");
        let f = Some(f.as_str());
        assert_has(&e, f, "services", "expected a map");
        assert_has(&e, f, "routes", "expected a list");
        assert_has(&e, f, "node", "expected a map");
        // serde alone would read a struct from a list.
        assert_has(&e, f, "auth", "expected a map");
    }

    #[test]
    fn yaml_syntax_errors_name_the_file() {
        // The broken file defines the service `users.yaml` uses: its route is not
        // also reported as naming an unknown service.
        let dir = TestDir::with(&[
            ("bad.yaml", "services: [\n  user-service: {}\n"),
            (
                "users.yaml",
                "routes: [{ path: /a, service: user-service }]",
            ),
        ]);
        let e = load_err(&dir);
        assert_has(&e, Some(&dir.file("bad.yaml")), "", "invalid YAML");
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn empty_sections_mean_defaults() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "node:\nauth:\nroutes:\nservices:\n# nothing else\n",
        )]);
        let cfg = load(&dir);
        assert_eq!(cfg.node.id, 1);
        assert!(cfg.gateway.jwt.is_none());
        let dir = TestDir::with(&[("empty.yaml", "")]);
        assert!(load(&dir).gateway.services.is_empty());
    }

    #[test]
    fn duplicate_service_names_both_files() {
        let dir = TestDir::with(&[("a.yaml", USER_SERVICE), ("b.yaml", USER_SERVICE)]);
        let e = load_err(&dir);
        let msg = format!(
            "service \"user-service\" is already defined in {}",
            dir.file("a.yaml")
        );
        assert_has(&e, Some(&dir.file("b.yaml")), "services.user-service", &msg);
        assert_eq!(e.0.len(), 1, "{e}");
    }

    #[test]
    fn single_owner_sections_twice_name_both_files() {
        let dir = TestDir::with(&[
            (
                "a.yaml",
                "node: { id: 1 }\nauth: {}\nlog: { format: json }\n",
            ),
            (
                "b.yaml",
                "node: { id: 2 }\nauth:\n  oauth: { token_ttl: 1m }\ncluster: {}\nadmin: {}\n",
            ),
            ("c.yaml", "log:\ncluster: {}\nadmin: { token: t }\n"),
        ]);
        let e = load_err(&dir);
        let a = dir.file("a.yaml");
        let b = dir.file("b.yaml");
        let c = Some(dir.file("c.yaml"));
        assert_has(
            &e,
            Some(&b),
            "node",
            &format!("section \"node\" is already defined in {a}"),
        );
        assert_has(
            &e,
            Some(&b),
            "auth",
            &format!("section \"auth\" is already defined in {a}"),
        );
        assert_has(&e, c.as_deref(), "log", &format!("already defined in {a}"));
        assert_has(
            &e,
            c.as_deref(),
            "cluster",
            &format!("already defined in {b}"),
        );
        assert_has(
            &e,
            c.as_deref(),
            "admin",
            &format!("already defined in {b}"),
        );
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn duplicate_route_ids_across_files_name_both_files() {
        let dir = TestDir::with(&[
            ("a.yaml", &format!("{USER_SERVICE}routes:\n  - {{ id: users, path: /u, service: user-service }}\n")),
            ("b.yaml", "routes:\n  - { path: /x, service: user-service }\n  - { id: users, path: /v, service: user-service }\n"),
        ]);
        let e = load_err(&dir);
        let msg = format!(
            "duplicate route id \"users\" (also routes[0] in {})",
            dir.file("a.yaml")
        );
        assert_has(&e, Some(&dir.file("b.yaml")), "routes[1].id", &msg);
    }

    #[test]
    fn validation_errors_name_the_file_and_index_within_it() {
        // routes[1] of users.yaml, not the merged index 3.
        let dir = TestDir::with(&[
            ("a.yaml", &format!("{USER_SERVICE}routes:\n  - {{ path: /a, service: user-service }}\n  - {{ path: /b, service: user-service }}\n")),
            ("users.yaml", "routes:\n  - { path: /u, service: user-service }\n  - { path: /v, service: user-svc }\n"),
        ]);
        let e = load_err(&dir);
        assert_eq!(e.0.len(), 1, "{e}");
        let file = dir.file("users.yaml");
        assert_eq!(
            e.to_string(),
            format!("{file}: routes[1].service: unknown service \"user-svc\"")
        );
    }

    #[test]
    fn env_vars_are_substituted_before_parsing() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "services:\n  s:\n    upstreams: [\"http://${HOST:-127.0.0.1}:${PORT}/base$$x\"]\n",
        )]);
        let cfg = match load_dir_with_env(dir.path(), &env(&[("PORT", "9001")])) {
            Ok(cfg) => cfg,
            Err(e) => panic!("{e}"),
        };
        let up = &cfg.gateway.services["s"].upstreams[0];
        assert_eq!(up.url, "http://127.0.0.1:9001/base$x");
        assert_eq!(up.base_path, "/base$x");
    }

    #[test]
    fn unset_env_var_names_file_and_variable() {
        let dir = TestDir::with(&[
            ("s.yaml", USER_SERVICE),
            ("admin.yaml", "\nadmin:\n  token: ${SLUICE_NOPE}\n"),
        ]);
        let e = load_err(&dir);
        assert_has(
            &e,
            Some(&dir.file("admin.yaml")),
            "",
            "line 3: environment variable SLUICE_NOPE is not set",
        );
    }

    #[test]
    fn substitute_env_forms() {
        let lookup = env(&[("A", "alpha"), ("EMPTY", ""), ("N", "3")]);
        let sub = |text: &str| substitute_env(text, &lookup);
        assert_eq!(sub("x: ${A}").as_deref(), Ok("x: alpha"));
        assert_eq!(sub("pre-${A}-post${N}").as_deref(), Ok("pre-alpha-post3"));
        assert_eq!(sub("${B:-beta} ${A:-unused}").as_deref(), Ok("beta alpha"));
        assert_eq!(sub("${B:-}|${EMPTY:-d}|${EMPTY}").as_deref(), Ok("|d|"));
        assert_eq!(sub("${B:-a:-b c}").as_deref(), Ok("a:-b c"));
        assert_eq!(
            sub("cost: $$5, $${A}, $$$${A}").as_deref(),
            Ok("cost: $5, ${A}, $${A}")
        );
        assert_eq!(sub("$A $1 a$ $").as_deref(), Ok("$A $1 a$ $"));
        assert_eq!(sub("$$${A}").as_deref(), Ok("$alpha"));
        assert_eq!(sub("no vars").as_deref(), Ok("no vars"));

        let err = |text: &str| match sub(text) {
            Err(msg) => msg,
            Ok(out) => panic!("{text:?} substituted to {out:?}"),
        };
        assert_eq!(
            err("a: ${MISSING}"),
            "line 1: environment variable MISSING is not set"
        );
        assert_eq!(
            err("${X}\n${A}\n${Y}"),
            "line 1: environment variable X is not set; line 3: environment variable Y is not set"
        );
        assert!(err("a: ${A").contains("unterminated"));
        assert!(err("a: ${}").contains("invalid variable name"));
        assert!(err("a: ${1X}").contains("invalid variable name \"1X\""));
        assert!(err("a: ${A B}").contains("invalid variable name"));
    }

    #[test]
    fn json_unknown_keys_and_type_errors_have_paths_and_no_file() {
        let body = br#"{
            "services": { "s": { "upstreams": ["http://s:1"], "timout": "1s" } },
            "routes": [ { "path": "/a", "service": "s" }, { "path": "/b", "service": "s", "methods": "GET" } ],
            "rate_limits": [ { "endpoint": "/a", "limit": -1, "window": "1s", "scope": "ip" } ],
            "auth": { "jwt": { "keys": [], "extra": true } },
            "node": { "id": 1 }
        }"#;
        let e = match parse_gateway_json(body) {
            Err(e) => e,
            Ok(spec) => panic!("parsed: {spec:?}"),
        };
        assert_has(&e, None, "services.s.timout", "unknown key");
        assert_has(&e, None, "routes[1].methods", "invalid type");
        assert_has(&e, None, "rate_limits[0].limit", "invalid value");
        assert_has(&e, None, "auth.jwt.extra", "unknown key");
        assert_has(
            &e,
            None,
            "node",
            "unknown key (expected one of: services, routes, rate_limits, auth, webhooks)",
        );
        assert_eq!(e.0.len(), 5, "{e}");
    }

    #[test]
    fn json_syntax_and_shape_errors() {
        for (body, fragment) in [
            (&b"{"[..], "invalid JSON"),
            (b"[]", "expected a JSON object"),
            (b"{\"routes\": {}}", "expected a list"),
        ] {
            let e = match parse_gateway_json(body) {
                Err(e) => e,
                Ok(spec) => panic!("parsed: {spec:?}"),
            };
            assert!(
                e.0.iter()
                    .any(|e| e.file.is_none() && e.message.contains(fragment)),
                "{e}"
            );
        }
        match parse_gateway_json(b"{}") {
            Ok(spec) => assert_eq!(spec, GatewaySpec::default()),
            Err(e) => panic!("{e}"),
        }
        let body =
            br#"{"services": {"s": {"upstreams": ["http://a:1"], "load_balancing": "random"}}}"#;
        match parse_gateway_json(body) {
            Err(e) => assert_has(
                &e,
                None,
                "services.s.load_balancing",
                "unknown variant `random`, expected `round_robin` or `least_requests`",
            ),
            Ok(spec) => panic!("parsed: {spec:?}"),
        }
    }

    #[test]
    fn api_config_errors_use_merged_paths() {
        let body = br#"{
            "services": { "s": { "upstreams": ["http://s:1"] } },
            "routes": [ {"path": "/a", "service": "s"}, {"path": "/b", "service": "s"},
                        {"path": "/c", "service": "s"}, {"path": "/d", "service": "x"} ]
        }"#;
        let spec = match parse_gateway_json(body) {
            Ok(spec) => spec,
            Err(e) => panic!("{e}"),
        };
        let e = match crate::Gateway::compile(spec, &Origins::default(), None) {
            Err(e) => e,
            Ok(_) => panic!("compiled"),
        };
        assert_eq!(e.to_string(), "routes[3].service: unknown service \"x\"");
    }
}
