//! Validating a [`GatewaySpec`] and compiling it into a [`Gateway`] in one pass that
//! reports every problem, each at the file and key path it came from.

use crate::de::join;
use crate::error::{ConfigError, ConfigErrors};
use crate::gateway::{
    AuthMode, CircuitBreakerConfig, Gateway, HealthCheckConfig, JwtAlg, JwtConfig, JwtKey,
    JwtKeyMaterial, OAuthConfig, Quota, RateLimit, RateLimitAlgorithm, RateLimitEndpoint,
    RateLimitScope, Route, Service, Upstream, DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_JWT_LEEWAY, DEFAULT_MAX_TOKEN_BYTES,
    DEFAULT_OAUTH_ISSUER, DEFAULT_ROLES_CLAIM, DEFAULT_TIMEOUT, DEFAULT_TOKEN_ENDPOINT_LIMIT,
    DEFAULT_TOKEN_TTL, MAX_RATE_LIMIT_NAME, MAX_RATE_LIMIT_WINDOW, MIN_RATE_LIMIT_WINDOW,
    TOKEN_ENDPOINT_POLICY,
};
use crate::keyword::unknown;
use crate::load::Origins;
use crate::pem::PublicKey;
use crate::routes::{parse_template, RouteTable, TemplateKind};
use crate::schema::{
    CircuitBreakerSpec, GatewaySpec, HealthCheckSpec, JwtSpec, OAuthSpec, RateLimitSpec, RouteSpec,
    ServiceSpec,
};
use http::Method;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Parses duration text (`30s`, `500ms`, `1h 30m`); zero is allowed.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("duration must not be empty (e.g. 30s, 500ms, 5m)".to_owned());
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration {text:?}: {e} (e.g. 30s, 500ms, 5m)"))
}

/// Like [`parse_duration`], for values where zero would mean "never" or "always".
pub(crate) fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d.is_zero() {
        return Err(format!("duration {text:?} must be greater than 0"));
    }
    Ok(d)
}

/// Like [`parse_duration`], refusing values above `max`: every duration key has a
/// bound no legitimate value reaches, so adding it to a clock cannot overflow.
pub(crate) fn parse_bounded_duration(text: &str, max: Duration) -> Result<Duration, String> {
    bounded(text, parse_duration(text)?, max)
}

/// `d` (parsed from `text`) if it is at most `max`.
pub(crate) fn bounded(text: &str, d: Duration, max: Duration) -> Result<Duration, String> {
    if d > max {
        return Err(format!(
            "duration {text:?} is too long; at most {} is allowed",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}

/// Which entry of the spec an error is about.
#[derive(Clone, Copy)]
enum Entry<'k> {
    Service(&'k str),
    Route(usize),
    RateLimit(usize),
    Auth,
}

/// Collects errors, turning merged indices and names into the file and the key
/// path inside it (via [`Origins`]).
struct Report<'a> {
    origins: &'a Origins,
    reported: &'a Reported,
    errors: Vec<ConfigError>,
}

impl<'a> Report<'a> {
    /// The file and key path of `key` (relative, may be empty) in `entry`.
    fn locate(&self, entry: Entry<'_>, key: &str) -> (Option<&'a str>, String) {
        let origins = self.origins;
        match entry {
            Entry::Service(name) => (
                origins.services.get(name).map(String::as_str),
                join(&format!("services.{name}"), key),
            ),
            Entry::Route(i) => {
                let (file, base) = located(&origins.routes, "routes", i);
                (file, join(&base, key))
            }
            Entry::RateLimit(i) => {
                let (file, base) = located(&origins.rate_limits, "rate_limits", i);
                (file, join(&base, key))
            }
            Entry::Auth => (origins.auth.as_deref(), join("auth", key)),
        }
    }

    /// Records an error, unless it is about a stand-in: that value's type error is
    /// already reported, and what validation says about the stand-in would be noise.
    fn push(&mut self, entry: Entry<'_>, key: &str, msg: impl Into<String>) {
        let (file, path) = self.locate(entry, key);
        if !self.reported.covers(file, &path) {
            self.errors.push(ConfigError::new(file, path, msg));
        }
    }

    /// Whether `key` of `entry`, or something inside it, is a stand-in. A check
    /// that compares it with another value (of this entry or another) is skipped,
    /// since the stand-in is not what the operator wrote.
    fn stood_in(&self, entry: Entry<'_>, key: &str) -> bool {
        let (file, path) = self.locate(entry, key);
        self.reported.touches(file, &path)
    }

    fn service(&mut self, name: &str, key: &str, msg: impl Into<String>) {
        self.push(Entry::Service(name), key, msg);
    }

    fn route(&mut self, i: usize, key: &str, msg: impl Into<String>) {
        self.push(Entry::Route(i), key, msg);
    }

    fn rate_limit(&mut self, i: usize, key: &str, msg: impl Into<String>) {
        self.push(Entry::RateLimit(i), key, msg);
    }

    fn auth(&mut self, key: &str, msg: impl Into<String>) {
        self.push(Entry::Auth, key, msg);
    }

    /// `rate_limits[0] in a.yaml` (or `rate_limits[0]` for API config), to name
    /// the other side of a conflict.
    fn rate_limit_ref(&self, i: usize) -> String {
        match located(&self.origins.rate_limits, "rate_limits", i) {
            (Some(file), base) => format!("{base} in {file}"),
            (None, base) => base,
        }
    }

    /// `routes[0] in a.yaml` (or `routes[0]` for API config), to name the other
    /// side of a conflict.
    fn route_ref(&self, i: usize) -> String {
        match located(&self.origins.routes, "routes", i) {
            (Some(file), base) => format!("{base} in {file}"),
            (None, base) => base,
        }
    }
}

/// The file and `section[index-in-file]` of merged entry `i`.
fn located<'a>(list: &'a [(String, usize)], section: &str, i: usize) -> (Option<&'a str>, String) {
    match list.get(i) {
        Some((file, j)) => (Some(file.as_str()), format!("{section}[{j}]")),
        None => (None, format!("{section}[{i}]")),
    }
}

/// What the loader has already reported about the spec it hands to validation, so
/// that validation reports neither those problems again nor their knock-on effects.
#[derive(Debug, Default)]
pub(crate) struct Reported {
    /// Services whose entry could not be read at all.
    pub services: BTreeSet<String>,
    /// A whole file failed to parse: any service may be missing.
    pub files: bool,
    /// `(file, key path)` of each value of the wrong type (or missing required
    /// field) that was replaced by a stand-in so the rest of its entry could be
    /// checked (see `de.rs`).
    pub stand_ins: BTreeSet<(String, String)>,
}

impl Reported {
    /// Whether service `name` may exist in a part of the config that was not read.
    fn service_missing(&self, name: &str) -> bool {
        self.files || self.services.contains(name)
    }

    /// Whether `path` of `file` is a stand-in or inside one.
    fn covers(&self, file: Option<&str>, path: &str) -> bool {
        self.stand_ins_of(file)
            .any(|stand_in| within(path, stand_in))
    }

    /// Whether a stand-in is at `path` of `file`, inside it, or around it.
    fn touches(&self, file: Option<&str>, path: &str) -> bool {
        self.stand_ins_of(file)
            .any(|stand_in| within(path, stand_in) || within(stand_in, path))
    }

    /// Config sent over the API (no file) is never validated with stand-ins.
    fn stand_ins_of<'s>(&'s self, file: Option<&'s str>) -> impl Iterator<Item = &'s str> {
        self.stand_ins
            .iter()
            .filter(move |(f, _)| Some(f.as_str()) == file)
            .map(|(_, path)| path.as_str())
    }
}

/// Whether key path `path` is `outer` or inside it: `a.b` and `a[0]` are inside
/// `a`, `ab` is not.
fn within(path: &str, outer: &str) -> bool {
    path.strip_prefix(outer)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

/// Validates and compiles `spec`.
pub(crate) fn compile(
    mut spec: GatewaySpec,
    origins: &Origins,
    config_dir: Option<&Path>,
    reported: &Reported,
) -> Result<Gateway, ConfigErrors> {
    let mut report = Report {
        origins,
        reported,
        errors: Vec::new(),
    };
    let services: BTreeMap<String, Arc<Service>> = spec
        .services
        .iter()
        .map(|(name, svc)| (name.clone(), Arc::new(service(name, svc, &mut report))))
        .collect();
    let routes = routes(&spec.routes, &services, &mut report);
    let rate_limits = rate_limits(&spec.rate_limits, &spec.routes, &mut report);
    let jwt = spec
        .auth
        .jwt
        .as_mut()
        .and_then(|jwt| compile_jwt(jwt, config_dir, &mut report));
    let oauth = spec
        .auth
        .oauth
        .as_ref()
        .map(|oauth| compile_oauth(oauth, &mut report))
        .unwrap_or_default();
    if let Some(text) = &spec.webhooks.max_payload {
        if let Err(message) = crate::webhooks::parse_size(text) {
            report
                .errors
                .push(ConfigError::new(None, "webhooks.max_payload", message));
        }
    }

    if !report.errors.is_empty() {
        return Err(ConfigErrors(report.errors));
    }
    Ok(Gateway {
        spec,
        services,
        routes,
        rate_limits,
        jwt,
        oauth,
    })
}

fn service(name: &str, spec: &ServiceSpec, report: &mut Report<'_>) -> Service {
    if name.trim().is_empty() {
        report.service(name, "", "service name must not be empty");
    } else if let Err(msg) = check_id(name) {
        report.service(name, "", format!("service name {msg}"));
    }
    if spec.upstreams.is_empty() {
        report.service(name, "upstreams", "at least one upstream is required");
    }
    let upstreams = spec
        .upstreams
        .iter()
        .enumerate()
        .filter_map(|(i, url)| {
            match upstream(url)
                .and_then(|u| check_target(&u, spec.allow_link_local.unwrap_or(false)).map(|()| u))
            {
                Ok(u) => Some(u),
                Err(msg) => {
                    report.service(name, &format!("upstreams[{i}]"), msg);
                    None
                }
            }
        })
        .collect();
    let timeout = positive_or(
        spec.timeout.as_deref(),
        DEFAULT_TIMEOUT,
        MAX_TIMEOUT,
        |msg| report.service(name, "timeout", msg),
    );
    let circuit_breaker = match &spec.circuit_breaker {
        Some(cb) => circuit_breaker(name, cb, report),
        None => CircuitBreakerConfig::default(),
    };
    let health_check = spec
        .health_check
        .as_ref()
        .map(|hc| health_check(name, hc, report));
    Service {
        name: name.to_owned(),
        upstreams,
        load_balancing: spec.load_balancing.unwrap_or_default(),
        timeout,
        circuit_breaker,
        health_check,
    }
}

/// Longest upstream timeout (`services.*.timeout`, `routes[].timeout`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);
/// Longest breaker window and `open_for`.
pub const MAX_BREAKER_DURATION: Duration = Duration::from_secs(3600);
/// Longest health-check interval and timeout.
pub const MAX_HEALTH_CHECK_DURATION: Duration = Duration::from_secs(3600);
/// Longest `auth.jwt.leeway`.
pub const MAX_JWT_LEEWAY: Duration = Duration::from_secs(3600);
/// Longest `auth.oauth.token_ttl`.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `default` when `text` is absent; a bad value (zero, or longer than `max`) is
/// reported and also yields `default`.
fn positive_or(
    text: Option<&str>,
    default: Duration,
    max: Duration,
    mut fail: impl FnMut(String),
) -> Duration {
    let parse = |t: &str| parse_positive_duration(t).and_then(|d| bounded(t, d, max));
    match text.map(parse) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(msg)) => {
            fail(msg);
            default
        }
    }
}

/// The longest service name or route id.
pub const MAX_ID_BYTES: usize = 256;

/// A service name or route id: at most [`MAX_ID_BYTES`], no control characters
/// (NUL, CR, LF, ...), and no `.` or `..` path segment (ids appear in admin URLs
/// and logs; a route id defaults to its path, so `/` itself is fine).
pub fn check_id(id: &str) -> Result<(), String> {
    if id.len() > MAX_ID_BYTES {
        return Err(format!(
            "is {} bytes long; at most {MAX_ID_BYTES}",
            id.len()
        ));
    }
    if let Some(c) = id.chars().find(|c| c.is_control()) {
        return Err(format!("{id:?} contains the control character {c:?}"));
    }
    if id.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(format!("{id:?} contains a . or .. segment"));
    }
    Ok(())
}

/// Addresses an upstream must not point at without `allow_link_local: true`:
/// link-local ranges, where clouds serve instance metadata (credentials) —
/// 169.254.169.254, fd00:ec2::254 — and their metadata host names.
fn check_target(u: &Upstream, allow_link_local: bool) -> Result<(), String> {
    let host = u
        .authority
        .rsplit_once(':')
        .map_or(u.authority.as_str(), |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let link_local = match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => {
            (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
        Err(_) => {
            let h = host.to_ascii_lowercase();
            h == "metadata.google.internal" || h == "metadata" || h == "instance-data"
        }
    };
    if link_local && !allow_link_local {
        return Err(format!(
            "URL {:?} points at a link-local or cloud-metadata address; set the service's \
             allow_link_local: true if that is really meant",
            u.url
        ));
    }
    Ok(())
}

fn upstream(text: &str) -> Result<Upstream, String> {
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("URL {text:?} contains the control character {c:?}"));
    }
    if text.len() > 2048 {
        return Err(format!("URL is {} bytes long; at most 2048", text.len()));
    }
    let url = url::Url::parse(text.trim()).map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    let scheme = url.scheme();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "URL {text:?} must use http or https, not {scheme:?}"
        ));
    }
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h,
        _ => return Err(format!("URL {text:?} has no host")),
    };
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("URL {text:?} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("URL {text:?} must not contain credentials"));
    }
    // Both schemes have a known default port, so this never falls back.
    let port = url.port_or_known_default().unwrap_or(80);
    if port == 0 {
        return Err(format!("URL {text:?} has port 0"));
    }
    Ok(Upstream {
        url: text.trim().to_owned(),
        scheme: scheme.to_owned(),
        authority: format!("{host}:{port}"),
        base_path: url.path().trim_end_matches('/').to_owned(),
    })
}

fn circuit_breaker(
    name: &str,
    spec: &CircuitBreakerSpec,
    report: &mut Report<'_>,
) -> CircuitBreakerConfig {
    let d = CircuitBreakerConfig::default();
    let mut count = |key: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            report.service(name, &format!("circuit_breaker.{key}"), "must be > 0");
            default
        }
        Some(n) => n,
        None => default,
    };
    let min_requests = count("min_requests", spec.min_requests, d.min_requests);
    let consecutive_failures = count(
        "consecutive_failures",
        spec.consecutive_failures,
        d.consecutive_failures,
    );
    let close_after = count("close_after", spec.close_after, d.close_after);
    let error_rate = match spec.error_rate {
        Some(r) if r > 0.0 && r <= 1.0 => r,
        Some(r) => {
            report.service(
                name,
                "circuit_breaker.error_rate",
                format!("must be in (0, 1], got {r}"),
            );
            d.error_rate
        }
        None => d.error_rate,
    };
    let window = positive_or(
        spec.window.as_deref(),
        d.window,
        MAX_BREAKER_DURATION,
        |msg| report.service(name, "circuit_breaker.window", msg),
    );
    let open_for = positive_or(
        spec.open_for.as_deref(),
        d.open_for,
        MAX_BREAKER_DURATION,
        |msg| report.service(name, "circuit_breaker.open_for", msg),
    );
    CircuitBreakerConfig {
        enabled: spec.enabled.unwrap_or(d.enabled),
        error_rate,
        window,
        min_requests,
        consecutive_failures,
        open_for,
        close_after,
    }
}

fn health_check(name: &str, spec: &HealthCheckSpec, report: &mut Report<'_>) -> HealthCheckConfig {
    let path = spec.path.clone().unwrap_or_else(|| "/health".to_owned());
    if !path.starts_with('/') {
        report.service(
            name,
            "health_check.path",
            format!("{path:?} must start with \"/\""),
        );
    }
    let interval = positive_or(
        spec.interval.as_deref(),
        DEFAULT_HEALTH_CHECK_INTERVAL,
        MAX_HEALTH_CHECK_DURATION,
        |msg| report.service(name, "health_check.interval", msg),
    );
    // Probes start every interval whether or not the last one has answered, so each
    // must time out before the next starts. The default therefore shrinks with a
    // short interval: `interval: 500ms` alone must not be refused over a timeout the
    // operator never wrote.
    let default_timeout = DEFAULT_HEALTH_CHECK_TIMEOUT.min(interval / 2);
    let timeout = positive_or(
        spec.timeout.as_deref(),
        default_timeout,
        MAX_HEALTH_CHECK_DURATION,
        |msg| report.service(name, "health_check.timeout", msg),
    );
    if timeout >= interval && !report.stood_in(Entry::Service(name), "health_check.interval") {
        report.service(
            name,
            "health_check.timeout",
            format!(
                "must be shorter than the interval ({})",
                humantime::format_duration(interval)
            ),
        );
    }
    let mut count = |key: &str, value: Option<u32>, default: u32| match value {
        Some(0) => {
            report.service(name, &format!("health_check.{key}"), "must be > 0");
            default
        }
        Some(n) => n,
        None => default,
    };
    HealthCheckConfig {
        path,
        interval,
        timeout,
        healthy_after: count("healthy_after", spec.healthy_after, 2),
        unhealthy_after: count("unhealthy_after", spec.unhealthy_after, 3),
    }
}

fn routes(
    specs: &[RouteSpec],
    services: &BTreeMap<String, Arc<Service>>,
    report: &mut Report<'_>,
) -> RouteTable {
    let mut compiled: Vec<Route> = Vec::new();
    // Merged index of each compiled route, to report table build errors.
    let mut index_of: Vec<usize> = Vec::new();
    let mut ids: HashMap<String, usize> = HashMap::new();
    // Path shape -> (merged index, methods) of the routes seen so far.
    let mut shapes: HashMap<String, Vec<(usize, Vec<Method>)>> = HashMap::new();

    for (i, spec) in specs.iter().enumerate() {
        let template = match parse_template(&spec.path) {
            Ok(t) => Some(t),
            Err(msg) => {
                report.route(i, "path", msg);
                None
            }
        };

        let id = match &spec.id {
            Some(id) if id.trim().is_empty() => {
                report.route(i, "id", "must not be empty");
                id.clone()
            }
            Some(id) => {
                if let Err(msg) = check_id(id) {
                    report.route(i, "id", msg);
                }
                id.clone()
            }
            None => spec.path.clone(),
        };
        // A stand-in id (or path, which the id defaults to) is not what was written:
        // it neither conflicts with nor reserves an id.
        let id_known =
            !report.stood_in(Entry::Route(i), "id") && !report.stood_in(Entry::Route(i), "path");
        match ids.get(&id) {
            _ if !id_known => {}
            Some(&first) => {
                let (key, hint) = if spec.id.is_some() {
                    ("id", "")
                } else {
                    (
                        "path",
                        "; the id defaults to the path, so set `id` on routes sharing a path",
                    )
                };
                let other = report.route_ref(first);
                report.route(
                    i,
                    key,
                    format!("duplicate route id {id:?} (also {other}){hint}"),
                );
            }
            None => {
                ids.insert(id.clone(), i);
            }
        }

        let service = services.get(&spec.service);
        if service.is_none() && !report.reported.service_missing(&spec.service) {
            report.route(i, "service", format!("unknown service {:?}", spec.service));
        }

        let mut methods: Vec<Method> = Vec::new();
        for (k, text) in spec.methods.iter().enumerate() {
            let key = format!("methods[{k}]");
            // Operators write `get` as often as `GET`; clients send the standard
            // methods upper-case, so that is the form compared.
            match Method::from_bytes(text.trim().to_ascii_uppercase().as_bytes()) {
                Err(_) => report.route(
                    i,
                    &key,
                    format!("invalid method {text:?} (expected a token such as GET or PURGE)"),
                ),
                Ok(m) if methods.contains(&m) => {
                    report.route(i, &key, format!("duplicate method {:?}", m.as_str()))
                }
                Ok(m) => methods.push(m),
            }
        }

        let auth = match spec.auth.as_deref().map(str::trim) {
            None => AuthMode::Any,
            Some(text) => AuthMode::parse(text).unwrap_or_else(|| {
                report.route(i, "auth", unknown("auth mode", text, &AuthMode::expected()));
                AuthMode::Any
            }),
        };
        let mut roles = Vec::new();
        for (k, role) in spec.roles.iter().enumerate() {
            if role.trim().is_empty() {
                report.route(i, &format!("roles[{k}]"), "role must not be empty");
            } else {
                roles.push(role.trim().to_owned());
            }
        }
        if auth == AuthMode::None && !spec.roles.is_empty() {
            report.route(
                i,
                "roles",
                "not allowed with auth: none (roles need an authenticated caller)",
            );
        }

        let service_timeout = service.map_or(DEFAULT_TIMEOUT, |s| s.timeout);
        let timeout = positive_or(
            spec.timeout.as_deref(),
            service_timeout,
            MAX_TIMEOUT,
            |msg| report.route(i, "timeout", msg),
        );

        let Some(template) = template else { continue };
        let seen = shapes.entry(template.shape()).or_default();
        // A stand-in for `methods` is "every method": it would overlap everything.
        let methods_known = !report.stood_in(Entry::Route(i), "methods");
        for (other, other_methods) in seen.iter().filter(|_| methods_known) {
            if let Some(overlap) = method_overlap(&methods, other_methods) {
                let other_ref = report.route_ref(*other);
                let other_path = &specs[*other].path;
                report.route(
                    i,
                    "path",
                    format!(
                        "{:?} overlaps {other_ref} ({other_path:?}): same path with \
                         overlapping methods ({overlap})",
                        spec.path
                    ),
                );
            }
        }
        if methods_known {
            seen.push((i, methods.clone()));
        }

        index_of.push(i);
        compiled.push(Route {
            id,
            template: spec.path.clone(),
            methods,
            service: spec.service.clone(),
            timeout,
            auth,
            roles,
            forward_credentials: spec.forward_credentials.unwrap_or(false),
            allow_encoded_slashes: spec.allow_encoded_slashes.unwrap_or(false),
        });
    }

    match RouteTable::build(compiled) {
        Ok(table) => table,
        Err(errors) => {
            for (k, msg) in errors {
                let i = index_of.get(k).copied().unwrap_or(k);
                report.route(i, "path", msg);
            }
            RouteTable::default()
        }
    }
}

/// The methods both lists take (empty = all), as text; `None` when disjoint.
fn method_overlap(a: &[Method], b: &[Method]) -> Option<String> {
    let text = |ms: &[&Method]| ms.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ");
    match (a.is_empty(), b.is_empty()) {
        (true, true) => Some("all methods".to_owned()),
        (true, false) => Some(text(&b.iter().collect::<Vec<_>>())),
        (false, true) => Some(text(&a.iter().collect::<Vec<_>>())),
        (false, false) => {
            let both: Vec<&Method> = a.iter().filter(|m| b.contains(m)).collect();
            (!both.is_empty()).then(|| text(&both))
        }
    }
}

/// Compiles every `rate_limits` entry and checks that their names are unique.
fn rate_limits(
    specs: &[RateLimitSpec],
    routes: &[RouteSpec],
    report: &mut Report<'_>,
) -> Vec<RateLimit> {
    let compiled: Vec<(usize, RateLimit)> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, rl)| rate_limit(i, rl, routes, report).map(|c| (i, c)))
        .collect();
    let mut first_of: HashMap<&str, usize> = HashMap::new();
    for (i, limit) in &compiled {
        // An entry with a stand-in is not what the operator wrote (and its type
        // error already fails the load).
        if report.stood_in(Entry::RateLimit(*i), "") {
            continue;
        }
        match first_of.get(limit.name.as_str()) {
            None => {
                first_of.insert(&limit.name, *i);
            }
            Some(&first) => {
                let other = report.rate_limit_ref(first);
                let msg = if specs[*i].name.is_some() {
                    format!("name {:?} is already used by {other}", limit.name)
                } else {
                    format!(
                        "the default name {:?} ({{scope}}:{{endpoint}}) is already used by \
                         {other}; set a `name` on one of them",
                        limit.name
                    )
                };
                report.rate_limit(*i, "name", msg);
            }
        }
    }
    compiled.into_iter().map(|(_, limit)| limit).collect()
}

/// A policy name: 1 to 64 characters of printable ASCII other than space, `"`
/// and `\`, so that `RateLimit-Policy` can carry it as an RFC 8941 string as is.
fn check_policy_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\')
    {
        return Err(format!(
            "{name:?} contains {c:?}: a name is printable ASCII without spaces, \" or \\"
        ));
    }
    if name.len() > MAX_RATE_LIMIT_NAME {
        return Err(format!(
            "{name:?} is {} characters long; at most {MAX_RATE_LIMIT_NAME} are allowed",
            name.len()
        ));
    }
    if name == TOKEN_ENDPOINT_POLICY {
        return Err(format!(
            "{name:?} is reserved for the limit of POST /oauth/token \
             (auth.oauth.token_endpoint_limit)"
        ));
    }
    Ok(())
}

/// A rate-limit window: whole seconds, from 1 s to a day (`RateLimit-Policy`
/// states it in seconds, and windows are aligned to the epoch).
fn rate_limit_window(text: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(text)?;
    if d < MIN_RATE_LIMIT_WINDOW {
        Err(format!("window {text:?} is shorter than 1s"))
    } else if d > MAX_RATE_LIMIT_WINDOW {
        Err(format!("window {text:?} is longer than a day (24h)"))
    } else if d.subsec_nanos() != 0 {
        Err(format!("window {text:?} must be a whole number of seconds"))
    } else {
        Ok(d)
    }
}

fn rate_limit(
    i: usize,
    spec: &RateLimitSpec,
    routes: &[RouteSpec],
    report: &mut Report<'_>,
) -> Option<RateLimit> {
    let errors_before = report.errors.len();
    let endpoint = match rate_limit_endpoint(spec.endpoint.trim(), routes) {
        Ok(endpoint) => endpoint,
        Err(msg) => {
            report.rate_limit(i, "endpoint", msg);
            RateLimitEndpoint::Path(String::new())
        }
    };
    if spec.limit == 0 {
        report.rate_limit(i, "limit", "must be > 0");
    }
    let window = match rate_limit_window(&spec.window) {
        Ok(d) => d,
        Err(msg) => {
            report.rate_limit(i, "window", msg);
            Duration::ZERO
        }
    };
    let scope_text = spec.scope.trim();
    let scope = RateLimitScope::parse(scope_text).unwrap_or_else(|| {
        report.rate_limit(
            i,
            "scope",
            unknown("scope", scope_text, &RateLimitScope::expected()),
        );
        RateLimitScope::User
    });
    let algorithm = match spec.algorithm.as_deref().map(str::trim) {
        None => RateLimitAlgorithm::default(),
        Some(text) => RateLimitAlgorithm::parse(text).unwrap_or_else(|| {
            report.rate_limit(
                i,
                "algorithm",
                unknown("algorithm", text, &RateLimitAlgorithm::expected()),
            );
            RateLimitAlgorithm::default()
        }),
    };
    let burst = match spec.burst {
        None => spec.limit,
        Some(_) if algorithm != RateLimitAlgorithm::TokenBucket => {
            if !report.stood_in(Entry::RateLimit(i), "algorithm") {
                report.rate_limit(i, "burst", "only allowed with algorithm: token_bucket");
            }
            spec.limit
        }
        Some(0) => {
            report.rate_limit(i, "burst", "must be >= 1");
            spec.limit
        }
        Some(b) => b,
    };
    let name = match spec.name.as_deref().map(str::trim) {
        Some(name) => {
            if let Err(msg) = check_policy_name(name) {
                report.rate_limit(i, "name", msg);
            }
            name.to_owned()
        }
        None => {
            let derived = format!("{}:{}", scope.as_str(), spec.endpoint.trim());
            if let Err(msg) = check_policy_name(&derived) {
                if !report.stood_in(Entry::RateLimit(i), "scope")
                    && !report.stood_in(Entry::RateLimit(i), "endpoint")
                {
                    report.rate_limit(
                        i,
                        "name",
                        format!("the default name ({{scope}}:{{endpoint}}) {msg}; set a `name`"),
                    );
                }
            }
            derived
        }
    };
    if report.errors.len() > errors_before {
        return None;
    }
    Some(RateLimit {
        name,
        endpoint,
        limit: spec.limit,
        window,
        scope,
        algorithm,
        burst,
    })
}

/// What a `rate_limits[].endpoint` names. The contract's example limits
/// `/api/v1/search`, which no route of that example is written as, so a literal
/// path is accepted besides route paths and `/*` prefixes.
fn rate_limit_endpoint(text: &str, routes: &[RouteSpec]) -> Result<RateLimitEndpoint, String> {
    if routes.iter().any(|r| r.path == text) {
        return Ok(RateLimitEndpoint::Route(text.to_owned()));
    }
    let expected = "expected a route path, a literal path or a prefix ending in \"/*\"";
    let template = parse_template(text).map_err(|msg| format!("{msg}; {expected}"))?;
    match template.kind {
        TemplateKind::Exact => Ok(RateLimitEndpoint::Path(text.to_owned())),
        TemplateKind::Wildcard if template.shape() == text => {
            Ok(RateLimitEndpoint::Prefix(text[..text.len() - 1].to_owned()))
        }
        TemplateKind::Wildcard => Err(format!(
            "prefix {text:?} must not contain :parameters; {expected}"
        )),
        TemplateKind::Param => Err(format!(
            "{text:?} is not the path of any route (a path with :parameters must be \
             written exactly as a route's path)"
        )),
    }
}

/// Compiles `auth.jwt`. A readable `public_key_file` is replaced in `spec` by the
/// `public_key` it holds, so the stored spec is portable to other nodes.
fn compile_jwt(
    spec: &mut JwtSpec,
    config_dir: Option<&Path>,
    report: &mut Report<'_>,
) -> Option<JwtConfig> {
    let errors_before = report.errors.len();
    let leeway = match spec
        .leeway
        .as_deref()
        .map(|t| parse_bounded_duration(t, MAX_JWT_LEEWAY))
    {
        None => DEFAULT_JWT_LEEWAY,
        Some(Ok(d)) => d,
        Some(Err(msg)) => {
            report.auth("jwt.leeway", msg);
            DEFAULT_JWT_LEEWAY
        }
    };
    for (key, value) in [
        ("issuer", &spec.issuer),
        ("audience", &spec.audience),
        ("roles_claim", &spec.roles_claim),
    ] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            report.auth(&format!("jwt.{key}"), "must not be empty when set");
        }
    }
    let roles_claim = spec
        .roles_claim
        .as_deref()
        .map_or(DEFAULT_ROLES_CLAIM, str::trim)
        .to_owned();
    let max_token_bytes = match spec.max_token_bytes {
        None => DEFAULT_MAX_TOKEN_BYTES,
        Some(0) => {
            report.auth("jwt.max_token_bytes", "must be > 0");
            DEFAULT_MAX_TOKEN_BYTES
        }
        // Beyond usize is beyond any header a server would read: no limit.
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
    };
    if spec.keys.is_empty() {
        report.auth("jwt.keys", "at least one key is required");
    }
    let mut kids: HashMap<String, usize> = HashMap::new();
    let mut keys = Vec::new();
    for (k, key) in spec.keys.iter_mut().enumerate() {
        let base = format!("jwt.keys[{k}]");
        let at = |field: &str| join(&base, field);
        if key.kid.trim().is_empty() {
            report.auth(&at("kid"), "must not be empty");
        } else if let Some(first) = kids.get(&key.kid) {
            report.auth(
                &at("kid"),
                format!("duplicate kid {:?} (also jwt.keys[{first}])", key.kid),
            );
        } else {
            kids.insert(key.kid.clone(), k);
        }
        let alg_text = key.alg.trim();
        let Some(alg) = JwtAlg::parse(alg_text) else {
            report.auth(&at("alg"), unknown("alg", alg_text, &JwtAlg::expected()));
            continue;
        };
        let material = if alg.is_hmac() {
            for (field, set) in [
                ("public_key_file", key.public_key_file.is_some()),
                ("public_key", key.public_key.is_some()),
            ] {
                if set {
                    report.auth(
                        &at(field),
                        format!("not allowed with {}: HS* keys use secret", alg.as_str()),
                    );
                }
            }
            match key.secret.as_deref() {
                Some(secret) if !secret.is_empty() => {
                    Some(JwtKeyMaterial::HmacSecret(secret.to_owned()))
                }
                _ => {
                    report.auth(
                        &at("secret"),
                        format!("{} needs a non-empty secret", alg.as_str()),
                    );
                    None
                }
            }
        } else {
            let family = if alg.is_ec() { alg.as_str() } else { "RS*" };
            if key.secret.is_some() {
                report.auth(
                    &at("secret"),
                    format!(
                        "not allowed with {}: {family} keys use public_key_file or public_key",
                        alg.as_str()
                    ),
                );
            }
            match (&key.public_key_file, &key.public_key) {
                (Some(_), Some(_)) => {
                    report.auth(&base, "set exactly one of public_key_file and public_key");
                    None
                }
                (None, None) => {
                    // A key of the wrong type was removed: its error says enough.
                    let removed = ["public_key_file", "public_key"]
                        .iter()
                        .any(|field| report.stood_in(Entry::Auth, &at(field)));
                    if !removed {
                        report.auth(
                            &base,
                            format!("{} needs public_key_file or public_key", alg.as_str()),
                        );
                    }
                    None
                }
                (None, Some(pem)) => match public_key_material(alg, pem) {
                    Ok(material) => Some(material),
                    Err(msg) => {
                        report.auth(&at("public_key"), msg);
                        None
                    }
                },
                (Some(file), None) => {
                    match read_pem(file, config_dir).and_then(|(path, pem)| {
                        public_key_material(alg, &pem)
                            .map(|material| (pem, material))
                            .map_err(|msg| format!("{path} {msg}"))
                    }) {
                        Ok((pem, material)) => {
                            key.public_key = Some(pem);
                            key.public_key_file = None;
                            Some(material)
                        }
                        Err(msg) => {
                            report.auth(&at("public_key_file"), msg);
                            None
                        }
                    }
                }
            }
        };
        if let Some(material) = material {
            keys.push(JwtKey {
                kid: key.kid.clone(),
                alg,
                material,
            });
        }
    }
    if report.errors.len() > errors_before {
        return None;
    }
    Some(JwtConfig {
        issuer: spec.issuer.clone(),
        audience: spec.audience.clone(),
        leeway,
        roles_claim,
        max_token_bytes,
        keys,
    })
}

/// The material of an RS* or ES256 key from its PEM text, or why the text does not
/// hold a public key `alg` can verify with. The limits are those of RFC 7518 and of
/// ring (jsonwebtoken's backend): RSA 2048 to 8192 bits, ES256 on P-256 only.
fn public_key_material(alg: JwtAlg, pem: &str) -> Result<JwtKeyMaterial, String> {
    let key = crate::pem::public_key(pem)?;
    let name = alg.as_str();
    let kind = match key {
        PublicKey::Rsa { .. } => "an RSA public key".to_owned(),
        PublicKey::Ec { curve: Some(curve) } => format!("an EC {curve} public key"),
        PublicKey::Ec { curve: None } => "an EC public key on an unnamed curve".to_owned(),
        PublicKey::Other {
            algorithm: Some(algorithm),
        } => format!("a public key for {algorithm}"),
        PublicKey::Other { algorithm: None } => {
            "a public key of an unsupported algorithm".to_owned()
        }
    };
    match key {
        PublicKey::Rsa { bits } if alg.is_rsa() => {
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "is a {bits}-bit RSA key; {name} needs 2048 to 8192 bits (RFC 7518 §3.3)"
                ));
            }
            Ok(JwtKeyMaterial::RsaPublicPem(pem.to_owned()))
        }
        PublicKey::Ec {
            curve: Some("P-256"),
        } if alg == JwtAlg::ES256 => Ok(JwtKeyMaterial::EcPublicPem(pem.to_owned())),
        _ if alg.is_rsa() => Err(format!("is {kind}; {name} needs an RSA public key")),
        _ => Err(format!("is {kind}; {name} needs an EC P-256 public key")),
    }
}

/// The display path and text of a key file. The text is checked by
/// [`public_key_material`], whose message then names the path.
fn read_pem(file: &str, config_dir: Option<&Path>) -> Result<(String, String), String> {
    let Some(dir) = config_dir else {
        return Err(
            "cannot be used in config sent over the API; send the PEM text as public_key"
                .to_owned(),
        );
    };
    let path = dir.join(file.trim());
    if !path.is_file() {
        return Err(format!("file not found: {}", path.display()));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok((path.display().to_string(), text))
}

fn compile_oauth(spec: &OAuthSpec, report: &mut Report<'_>) -> OAuthConfig {
    let issuer = match spec.issuer.as_deref() {
        None => DEFAULT_OAUTH_ISSUER.to_owned(),
        Some(text) if text.trim().is_empty() => {
            report.auth("oauth.issuer", "must not be empty when set");
            DEFAULT_OAUTH_ISSUER.to_owned()
        }
        Some(text) => text.to_owned(),
    };
    let token_ttl = positive_or(
        spec.token_ttl.as_deref(),
        DEFAULT_TOKEN_TTL,
        MAX_TOKEN_TTL,
        |msg| report.auth("oauth.token_ttl", msg),
    );
    let token_endpoint_limit = match spec.token_endpoint_limit.as_deref().map(str::trim) {
        None => Some(DEFAULT_TOKEN_ENDPOINT_LIMIT),
        Some("unlimited") => None,
        Some(text) => match parse_quota(text) {
            Ok(q) => Some(q),
            Err(msg) => {
                report.auth(
                    "oauth.token_endpoint_limit",
                    format!("{msg}; `unlimited` turns the limit off"),
                );
                Some(DEFAULT_TOKEN_ENDPOINT_LIMIT)
            }
        },
    };
    OAuthConfig {
        issuer,
        token_ttl,
        token_endpoint_limit,
    }
}

/// `N/sec`, `N/s`, `N/min`, `N/m`, `N/hour`, `N/h` with `N > 0`.
pub(crate) fn parse_quota(text: &str) -> Result<Quota, String> {
    let bad = || format!("invalid rate {text:?} (expected N/sec, N/min or N/hour)");
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u64 = count.trim().parse().map_err(|_| bad())?;
    let per = match unit.trim() {
        "sec" | "s" => Duration::from_secs(1),
        "min" | "m" => Duration::from_secs(60),
        "hour" | "h" => Duration::from_secs(3600),
        _ => return Err(bad()),
    };
    if count == 0 {
        return Err(format!("rate {text:?} must allow at least 1 request"));
    }
    Ok(Quota { count, per })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_dir_with_env;
    use crate::pem::tests::{EC_P384, ED25519, RSA_1024, RSA_1024_PKCS1};
    use crate::testutil::{assert_has, test_env, TestDir, TEST_EC_PEM, TEST_PEM};

    const SERVICES: &str = "
services:
  user-service:
    upstreams: [http://127.0.0.1:9001]
routes:
  - { id: base, path: /base, service: user-service }
";

    /// Loads `s.yaml` (a valid service and route) plus `t.yaml` holding `yaml`, and
    /// asserts each `(key path, message fragment)` is reported for `t.yaml`, and
    /// nothing else.
    #[track_caller]
    fn check(yaml: &str, expected: &[(&str, &str)]) {
        let dir = TestDir::with(&[("s.yaml", SERVICES), ("t.yaml", yaml)]);
        dir.write("keys/rsa.pem", TEST_PEM);
        dir.write("keys/not-pem.txt", "hello");
        dir.write("keys/ec.pem", TEST_EC_PEM);
        dir.write("keys/ec384.pem", EC_P384);
        dir.write("keys/rsa1024.pem", RSA_1024);
        dir.write("keys/rsa1024-pkcs1.pem", RSA_1024_PKCS1);
        dir.write("keys/ed25519.pem", ED25519);
        dir.write(
            "keys/private.pem",
            "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
        );
        let errors = match load_dir_with_env(dir.path(), &test_env) {
            Ok(_) => panic!("expected errors for:\n{yaml}"),
            Err(e) => e,
        };
        let file = dir.file("t.yaml");
        for (path, fragment) in expected {
            assert_has(&errors, Some(&file), path, fragment);
        }
        assert_eq!(
            errors.0.len(),
            expected.len(),
            "unexpected extra errors:\n{errors}"
        );
    }

    #[track_caller]
    fn check_ok(yaml: &str) -> Gateway {
        let dir = TestDir::with(&[("s.yaml", SERVICES), ("t.yaml", yaml)]);
        dir.write("keys/rsa.pem", TEST_PEM);
        dir.write("keys/ec.pem", TEST_EC_PEM);
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => cfg.gateway,
            Err(e) => panic!("expected to load:\n{yaml}\ngot:\n{e}"),
        }
    }

    fn svc(body: &str) -> String {
        format!("services:\n  s:\n{body}")
    }

    #[test]
    fn service_upstreams() {
        check(
            &svc("    upstreams: []\n"),
            &[("services.s.upstreams", "at least one upstream is required")],
        );
        check(
            &svc("    timeout: 1s\n"),
            &[("services.s.upstreams", "at least one upstream is required")],
        );
        check(
            &svc("    upstreams: ['not a url', 'ftp://h:1', 'http://h:1/?q=1', 'http://h:1/#f', 'http://', 'http://u:p@h:1']\n"),
            &[
                ("services.s.upstreams[0]", "invalid URL \"not a url\""),
                ("services.s.upstreams[1]", "must use http or https, not \"ftp\""),
                ("services.s.upstreams[2]", "must not have a query or fragment"),
                ("services.s.upstreams[3]", "must not have a query or fragment"),
                ("services.s.upstreams[4]", "invalid URL"),
                ("services.s.upstreams[5]", "must not contain credentials"),
            ],
        );
    }

    #[test]
    fn upstream_parts() {
        let cases = [
            ("http://127.0.0.1:9001", "http", "127.0.0.1:9001", ""),
            ("http://backend", "http", "backend:80", ""),
            ("https://backend/", "https", "backend:443", ""),
            (
                "https://backend:8443/api/v2/",
                "https",
                "backend:8443",
                "/api/v2",
            ),
            ("http://[::1]:9000/x", "http", "[::1]:9000", "/x"),
        ];
        for (url, scheme, authority, base_path) in cases {
            match upstream(url) {
                Ok(u) => {
                    assert_eq!(u.url, url);
                    assert_eq!(
                        (
                            u.scheme.as_str(),
                            u.authority.as_str(),
                            u.base_path.as_str()
                        ),
                        (scheme, authority, base_path),
                        "{url}"
                    );
                }
                Err(e) => panic!("{url}: {e}"),
            }
        }
    }

    #[test]
    fn every_duration_has_a_bound_no_legitimate_value_reaches() {
        let huge = "18446744073709551615s";
        check(
            &svc(&format!(
                "    upstreams: [http://h:1]\n    timeout: {huge}\n    \
                 circuit_breaker: {{ window: 2h, open_for: {huge} }}\n    \
                 health_check: {{ interval: {huge}, timeout: 2h }}\n"
            )),
            &[
                ("services.s.timeout", "is too long; at most 1day"),
                (
                    "services.s.circuit_breaker.window",
                    "is too long; at most 1h",
                ),
                ("services.s.circuit_breaker.open_for", "is too long"),
                ("services.s.health_check.interval", "is too long"),
                ("services.s.health_check.timeout", "is too long"),
            ],
        );
        check(
            "services:\n  s: { upstreams: [http://h:1] }\nroutes:\n  - { path: /a, service: s, timeout: 25h }\n",
            &[("routes[0].timeout", "is too long")],
        );
        // The bounds themselves are legal.
        let gw = check_ok(&svc(
            "    upstreams: [http://h:1]\n    timeout: 24h\n    circuit_breaker: { window: 1h, open_for: 1h }\n",
        ));
        assert_eq!(gw.services["s"].timeout, MAX_TIMEOUT);
        assert_eq!(
            gw.services["s"].circuit_breaker.open_for,
            MAX_BREAKER_DURATION
        );
    }

    #[test]
    fn service_timeout_and_load_balancing() {
        let base = "    upstreams: [http://h:1]\n";
        check(
            &svc(&format!("{base}    timeout: soon\n")),
            &[("services.s.timeout", "invalid duration \"soon\"")],
        );
        check(
            &svc(&format!("{base}    timeout: 0s\n")),
            &[("services.s.timeout", "must be greater than 0")],
        );
        check(
            &svc(&format!("{base}    timeout: 30\n")),
            &[("services.s.timeout", "invalid duration \"30\"")],
        );
        check(
            &svc(&format!("{base}    load_balancing: random\n")),
            &[(
                "services.s.load_balancing",
                "unknown variant `random`, expected `round_robin` or `least_requests`",
            )],
        );
        let gw = check_ok(&svc(&format!(
            "{base}    timeout: 1m 30s\n    load_balancing: least_requests\n"
        )));
        assert_eq!(gw.services["s"].timeout, Duration::from_secs(90));
        assert_eq!(
            gw.services["s"].load_balancing,
            crate::LoadBalancing::LeastRequests
        );
        assert_eq!(gw.services["user-service"].timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn circuit_breaker_values() {
        let cb = |body: &str| {
            svc(&format!(
                "    upstreams: [http://h:1]\n    circuit_breaker: {{ {body} }}\n"
            ))
        };
        let p = "services.s.circuit_breaker.";
        check(
            &cb("error_rate: 0"),
            &[(&format!("{p}error_rate"), "must be in (0, 1], got 0")],
        );
        check(
            &cb("error_rate: 1.5"),
            &[(&format!("{p}error_rate"), "must be in (0, 1], got 1.5")],
        );
        check(
            &cb("min_requests: 0, consecutive_failures: 0, close_after: 0"),
            &[
                (&format!("{p}min_requests"), "must be > 0"),
                (&format!("{p}consecutive_failures"), "must be > 0"),
                (&format!("{p}close_after"), "must be > 0"),
            ],
        );
        check(
            &cb("window: forever, open_for: 0ms"),
            &[
                (&format!("{p}window"), "invalid duration \"forever\""),
                (&format!("{p}open_for"), "must be greater than 0"),
            ],
        );
        let gw = check_ok(&cb("enabled: false, error_rate: 1, window: 10s"));
        let got = &gw.services["s"].circuit_breaker;
        let want = CircuitBreakerConfig {
            enabled: false,
            error_rate: 1.0,
            window: Duration::from_secs(10),
            ..CircuitBreakerConfig::default()
        };
        assert_eq!(*got, want);
    }

    #[test]
    fn health_check_values() {
        let hc = |body: &str| {
            svc(&format!(
                "    upstreams: [http://h:1]\n    health_check: {{ {body} }}\n"
            ))
        };
        let p = "services.s.health_check.";
        check(
            &hc("path: health"),
            &[(&format!("{p}path"), "\"health\" must start with \"/\"")],
        );
        check(
            &hc("interval: 0s"),
            &[(&format!("{p}interval"), "must be greater than 0")],
        );
        check(
            &hc("timeout: x"),
            &[(&format!("{p}timeout"), "invalid duration")],
        );
        check(
            &hc("interval: 5s, timeout: 5s"),
            &[(
                &format!("{p}timeout"),
                "must be shorter than the interval (5s)",
            )],
        );
        check(
            &hc("interval: 500ms, timeout: 1s"),
            &[(
                &format!("{p}timeout"),
                "must be shorter than the interval (500ms)",
            )],
        );
        check(
            &hc("healthy_after: 0, unhealthy_after: 0"),
            &[
                (&format!("{p}healthy_after"), "must be > 0"),
                (&format!("{p}unhealthy_after"), "must be > 0"),
            ],
        );
        let gw = check_ok(&hc(
            "path: /ping, interval: 10s, timeout: 1s, healthy_after: 1, unhealthy_after: 5",
        ));
        let got = gw.services["s"].health_check.clone();
        let want = HealthCheckConfig {
            path: "/ping".into(),
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            healthy_after: 1,
            unhealthy_after: 5,
        };
        assert_eq!(got, Some(want));
        // Without a timeout, a short interval gets one that fits (half of it).
        for (interval, secs) in [
            ("500ms", 0.25),
            ("1s", 0.5),
            ("3s", 1.5),
            ("4s", 2.0),
            ("1m", 2.0),
        ] {
            let gw = check_ok(&hc(&format!("interval: {interval}")));
            let got = gw.services["s"].health_check.as_ref().map(|h| h.timeout);
            assert_eq!(
                got,
                Some(Duration::from_secs_f64(secs)),
                "interval {interval}"
            );
        }
        let gw = check_ok(&hc(""));
        assert_eq!(
            gw.services["s"]
                .health_check
                .as_ref()
                .map(|h| h.path.as_str()),
            Some("/health")
        );
        assert_eq!(gw.services["user-service"].health_check, None);
    }

    fn route(body: &str) -> String {
        format!("routes:\n  - {{ path: /ok, service: user-service }}\n  - {{ {body} }}\n")
    }

    #[test]
    fn route_paths() {
        for (path, fragment) in [
            ("api", "\"api\" must start with \"/\""),
            ("'/a/{id}'", "must not contain \"{\" or \"}\""),
            ("/a/x:id", "\":\" must start a whole segment"),
            ("'/a/:'", "invalid parameter \":\""),
            ("/*/a", "\"*\" is only allowed as the last segment"),
            ("/a*", "\"*\" must be a whole segment"),
            ("/a//b", "empty segment"),
            ("/a/:id/:id", "appears twice"),
            ("'/a?b'", "must not contain whitespace, \"?\" or \"#\""),
        ] {
            check(
                &route(&format!("path: {path}, service: user-service")),
                &[("routes[1].path", fragment)],
            );
        }
    }

    #[test]
    fn route_unknown_service() {
        check(
            &route("path: /x, service: user-svc"),
            &[("routes[1].service", "unknown service \"user-svc\"")],
        );
    }

    #[test]
    fn route_methods() {
        check(
            &route("path: /x, service: user-service, methods: [get, 'GE T', '', Post, GET, 'GET/', '(GET)']"),
            &[
                ("routes[1].methods[1]", "invalid method \"GE T\" (expected a token"),
                ("routes[1].methods[2]", "invalid method \"\""),
                ("routes[1].methods[4]", "duplicate method \"GET\""),
                ("routes[1].methods[5]", "invalid method \"GET/\""),
                ("routes[1].methods[6]", "invalid method \"(GET)\""),
            ],
        );
        let gw = check_ok(&route(
            "path: /x, service: user-service, methods: [get, Post, PURGE, M-SEARCH]",
        ));
        let r = gw.routes.routes().iter().find(|r| r.id == "/x").cloned();
        let methods: Option<Vec<&str>> = r
            .as_ref()
            .map(|r| r.methods.iter().map(Method::as_str).collect());
        assert_eq!(methods, Some(vec!["GET", "POST", "PURGE", "M-SEARCH"]));
        let r = r.expect("route /x");
        assert!(r.allows(&Method::POST) && r.allows(&Method::from_bytes(b"PURGE").expect("token")));
        assert!(r.allows(&Method::HEAD), "a route that takes GET takes HEAD");
        assert!(!r.allows(&Method::DELETE));
    }

    #[test]
    fn route_auth_and_roles() {
        check(
            &route("path: /x, service: user-service, auth: oauth"),
            &[(
                "routes[1].auth",
                "unknown auth mode \"oauth\" (expected none, jwt, api_key or any)",
            )],
        );
        check(
            &route("path: /x, service: user-service, roles: [admin, '', ' ']"),
            &[
                ("routes[1].roles[1]", "role must not be empty"),
                ("routes[1].roles[2]", "role must not be empty"),
            ],
        );
        check(
            &route("path: /x, service: user-service, auth: none, roles: [admin]"),
            &[("routes[1].roles", "not allowed with auth: none")],
        );
        let gw = check_ok("routes:\n  - { path: /a, service: user-service, auth: api_key, roles: [ops] }\n  - { path: /b, service: user-service }\n");
        let modes: Vec<(String, AuthMode)> = gw
            .routes
            .routes()
            .iter()
            .map(|r| (r.id.clone(), r.auth))
            .collect();
        assert!(modes.contains(&("/a".into(), AuthMode::ApiKey)));
        assert!(modes.contains(&("/b".into(), AuthMode::Any)));
    }

    #[test]
    fn route_credential_and_encoded_slash_flags() {
        check(
            &route("path: /x, service: user-service, forward_credentials: [yes]"),
            &[("routes[1].forward_credentials", "invalid type")],
        );
        check(
            &route("path: /x, service: user-service, allow_encoded_slashes: { a: 1 }"),
            &[("routes[1].allow_encoded_slashes", "invalid type")],
        );
        let gw = check_ok("routes:\n  - { path: /a, service: user-service, forward_credentials: true, allow_encoded_slashes: true }\n  - { path: /b, service: user-service, forward_credentials: false }\n  - { path: /c, service: user-service }\n");
        let flags: Vec<(String, bool, bool)> = gw
            .routes
            .routes()
            .iter()
            .map(|r| (r.id.clone(), r.forward_credentials, r.allow_encoded_slashes))
            .collect();
        assert!(flags.contains(&("/a".into(), true, true)));
        assert!(flags.contains(&("/b".into(), false, false)));
        assert!(
            flags.contains(&("/c".into(), false, false)),
            "both default to false"
        );
        // Absent flags stay absent in the stored spec; written ones are kept.
        let spec = |id: &str| gw.spec.routes.iter().find(|r| r.path == id).cloned();
        let c = spec("/c").expect("route /c");
        assert_eq!(
            (c.forward_credentials, c.allow_encoded_slashes),
            (None, None)
        );
        let b = spec("/b").expect("route /b");
        assert_eq!(b.forward_credentials, Some(false));
    }

    #[test]
    fn hostile_upstreams_and_ids_are_refused() {
        for (url, fragment) in [
            ("\"http://a.example\\r\\nX-Evil: 1\"", "control character"),
            ("http://10.0.0.1:0", "port 0"),
            (
                "http://169.254.169.254/latest",
                "link-local or cloud-metadata",
            ),
            ("http://169.254.10.1", "link-local or cloud-metadata"),
            ("\"http://[fe80::1]:80\"", "link-local or cloud-metadata"),
            ("\"http://[fd00:ec2::254]\"", "link-local or cloud-metadata"),
            (
                "http://metadata.google.internal",
                "link-local or cloud-metadata",
            ),
        ] {
            check(
                &svc(&format!("    upstreams: [{url}]\n")),
                &[("services.s.upstreams[0]", fragment)],
            );
        }
        // Private ranges are what a gateway fronts; link-local only on request.
        check_ok(&svc(
            "    upstreams: [http://10.0.0.5:9000, http://192.168.1.2]\n",
        ));
        let gw = check_ok(&svc(
            "    upstreams: [http://169.254.169.254]\n    allow_link_local: true\n",
        ));
        assert_eq!(gw.services["s"].upstreams.len(), 1);

        check(
            "services:\n  \"a\\u0000b\": { upstreams: [http://x] }\n",
            &[("services.a\u{0}b", "control character")],
        );
        check(
            &format!(
                "services:\n  {}: {{ upstreams: [http://x] }}\n",
                "n".repeat(300)
            ),
            &[(&format!("services.{}", "n".repeat(300)), "at most 256")],
        );
        check(
            &route("path: /x, service: user-service, id: \"a/../b\""),
            &[("routes[1].id", ". or .. segment")],
        );
        check(
            &route("path: /x, service: user-service, id: \"a\\tb\""),
            &[("routes[1].id", "control character")],
        );
        check_ok(&route("path: /, service: user-service"));
    }

    #[test]
    fn route_timeout() {
        check(
            &route("path: /x, service: user-service, timeout: 0s"),
            &[("routes[1].timeout", "must be greater than 0")],
        );
        check(
            &route("path: /x, service: user-service, timeout: later"),
            &[("routes[1].timeout", "invalid duration \"later\"")],
        );
        let gw = check_ok(&route("path: /x, service: user-service, timeout: 250ms"));
        let t: Vec<(String, Duration)> = gw
            .routes
            .routes()
            .iter()
            .map(|r| (r.id.clone(), r.timeout))
            .collect();
        assert!(t.contains(&("/x".into(), Duration::from_millis(250))));
        assert!(
            t.contains(&("/ok".into(), DEFAULT_TIMEOUT)),
            "service timeout is inherited"
        );
    }

    #[test]
    fn route_ids() {
        check(
            &route("id: '', path: /x, service: user-service"),
            &[("routes[1].id", "must not be empty")],
        );
        // Explicit ids in one file.
        check(
            "routes:\n  - { id: a, path: /x, service: user-service }\n  - { id: a, path: /y, service: user-service }\n",
            &[("routes[1].id", "duplicate route id \"a\" (also routes[0] in ")],
        );
        // The id defaults to the path; the hint says how to fix it.
        check(
            "routes:\n  - { path: /x, service: user-service, methods: [GET] }\n  - { path: /x, service: user-service, methods: [POST] }\n",
            &[("routes[1].path", "duplicate route id \"/x\" (also routes[0] in ")],
        );
        let gw = check_ok(
            "routes:\n  - { path: /x, service: user-service, methods: [GET] }\n  - { id: x-post, path: /x, service: user-service, methods: [POST] }\n",
        );
        assert_eq!(gw.routes.routes().len(), 3);
    }

    #[test]
    fn routes_with_the_same_shape_and_overlapping_methods() {
        check(
            "routes:\n  - { id: a, path: '/u/:id', service: user-service, methods: [GET, PUT] }\n  - { id: b, path: '/u/:uid', service: user-service, methods: [POST, PUT] }\n",
            &[("routes[1].path", "\"/u/:uid\" overlaps routes[0] in ")],
        );
        check(
            "routes:\n  - { id: a, path: '/s/*', service: user-service }\n  - { id: b, path: '/s/*', service: user-service, methods: [GET] }\n",
            &[("routes[1].path", "overlapping methods (GET)")],
        );
        check(
            "routes:\n  - { id: a, path: /e, service: user-service }\n  - { id: b, path: /e, service: user-service }\n",
            &[("routes[1].path", "overlapping methods (all methods)")],
        );
        // Disjoint methods on one shape are fine.
        check_ok("routes:\n  - { id: a, path: '/u/:id', service: user-service, methods: [GET] }\n  - { id: b, path: '/u/:uid', service: user-service, methods: [DELETE] }\n");
    }

    #[test]
    fn route_router_conflicts() {
        check(
            "routes:\n  - { path: '/*', service: user-service }\n  - { path: '/:tenant/*', service: user-service }\n",
            &[("routes[1].path", "conflicts with route path \"/*\"")],
        );
    }

    fn limit(body: &str) -> String {
        format!("rate_limits:\n  - {{ name: first, endpoint: /base, limit: 1, window: 1s, scope: ip }}\n  - {{ {body} }}\n")
    }

    #[test]
    fn rate_limit_endpoints() {
        let rest = "limit: 5, window: 1s, scope: user";
        check(
            &limit(&format!("endpoint: api/*, {rest}")),
            &[("rate_limits[1].endpoint", "must start with \"/\"")],
        );
        check(
            &limit(&format!("endpoint: '/u/:id', {rest}")),
            &[(
                "rate_limits[1].endpoint",
                "\"/u/:id\" is not the path of any route",
            )],
        );
        check(
            &limit(&format!("endpoint: '/u/:id/*', {rest}")),
            &[(
                "rate_limits[1].endpoint",
                "prefix \"/u/:id/*\" must not contain :parameters",
            )],
        );
        check(
            &limit(&format!("endpoint: '/u*', {rest}")),
            &[("rate_limits[1].endpoint", "\"*\" must be a whole segment")],
        );
        let gw = check_ok(&format!(
            "routes:\n  - {{ path: '/u/:id', service: user-service }}\nrate_limits:\n  - {{ endpoint: '/u/:id', {rest} }}\n  - {{ endpoint: '/*', {rest} }}\n  - {{ endpoint: /lit, {rest} }}\n"
        ));
        let endpoints: Vec<&RateLimitEndpoint> =
            gw.rate_limits.iter().map(|l| &l.endpoint).collect();
        assert_eq!(
            endpoints,
            [
                &RateLimitEndpoint::Route("/u/:id".into()),
                &RateLimitEndpoint::Prefix("/".into()),
                &RateLimitEndpoint::Path("/lit".into()),
            ]
        );
        let user = gw
            .routes
            .routes()
            .iter()
            .find(|r| r.id == "/u/:id")
            .cloned();
        let user = user.expect("route");
        assert!(gw.rate_limits[0].applies_to(&user, "/u/7"));
        assert!(gw.rate_limits[1].applies_to(&user, "/u/7"));
        assert!(!gw.rate_limits[2].applies_to(&user, "/u/7"));
    }

    #[test]
    fn rate_limit_values() {
        check(
            &limit("endpoint: /base, limit: 0, window: 1s, scope: ip"),
            &[("rate_limits[1].limit", "must be > 0")],
        );
        check(
            &limit("endpoint: /base, limit: 1, window: 1 fortnight, scope: ip"),
            &[("rate_limits[1].window", "invalid duration")],
        );
        check(
            &limit("endpoint: /base, limit: 1, window: 0s, scope: ip"),
            &[("rate_limits[1].window", "must be greater than 0")],
        );
        check(
            &limit("endpoint: /base, limit: 1, window: 1s, scope: planet"),
            &[(
                "rate_limits[1].scope",
                "unknown scope \"planet\" (expected user, ip, endpoint or client)",
            )],
        );
        check(
            &limit("endpoint: /base, limit: 1, window: 1s, scope: ip, algorithm: leaky"),
            &[("rate_limits[1].algorithm", "unknown algorithm \"leaky\"")],
        );
        check(
            &limit("endpoint: /base, limit: 1, window: 1s, scope: ip, burst: 5"),
            &[(
                "rate_limits[1].burst",
                "only allowed with algorithm: token_bucket",
            )],
        );
        check(&limit("endpoint: /base, limit: 1, window: 1s, scope: ip, algorithm: sliding_window, burst: 5"), &[("rate_limits[1].burst", "only allowed with algorithm: token_bucket")]);
        check(&limit("endpoint: /base, limit: 1, window: 1s, scope: ip, algorithm: token_bucket, burst: 0"), &[("rate_limits[1].burst", "must be >= 1")]);
        check(
            &limit("endpoint: /base, window: 1s, scope: ip"),
            &[("rate_limits[1]", "missing field `limit`")],
        );
        let gw = check_ok(&limit("endpoint: /base, limit: 10, window: 1m, scope: client, algorithm: token_bucket, burst: 20"));
        let l = &gw.rate_limits[1];
        assert_eq!(
            (l.limit, l.burst, l.window),
            (10, 20, Duration::from_secs(60))
        );
        assert_eq!(
            (l.scope, l.algorithm),
            (RateLimitScope::Client, RateLimitAlgorithm::TokenBucket)
        );
        assert_eq!(gw.rate_limits[0].burst, 1, "burst defaults to limit");
    }

    #[test]
    fn rate_limit_windows_are_whole_seconds_from_one_second_to_a_day() {
        for (window, fragment) in [
            ("500ms", "window \"500ms\" is shorter than 1s"),
            ("25h", "window \"25h\" is longer than a day (24h)"),
            ("2d", "is longer than a day"),
            (
                "1500ms",
                "window \"1500ms\" must be a whole number of seconds",
            ),
        ] {
            check(
                &limit(&format!(
                    "endpoint: /base, limit: 1, window: {window}, scope: ip"
                )),
                &[("rate_limits[1].window", fragment)],
            );
        }
        for (window, secs) in [("1s", 1), ("1000ms", 1), ("24h", 86_400), ("1day", 86_400)] {
            let gw = check_ok(&limit(&format!(
                "endpoint: /base, limit: 1, window: {window}, scope: ip"
            )));
            assert_eq!(
                gw.rate_limits[1].window,
                Duration::from_secs(secs),
                "{window}"
            );
        }
    }

    #[test]
    fn rate_limit_names_default_to_scope_and_endpoint() {
        let gw = check_ok(
            "rate_limits:\n  - { endpoint: /base, limit: 1, window: 1s, scope: user }\n  \
             - { endpoint: '/api/*', limit: 1, window: 1s, scope: ip }\n  \
             - { name: search, endpoint: /base, limit: 5, window: 1m, scope: user }\n",
        );
        let names: Vec<&str> = gw.rate_limits.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["user:/base", "ip:/api/*", "search"]);
    }

    #[test]
    fn rate_limit_names_are_valid_and_unique() {
        let long = "n".repeat(65);
        for (name, fragment) in [
            ("''", "must not be empty"),
            (
                "'my search'",
                "contains ' ': a name is printable ASCII without spaces",
            ),
            ("'a\"b'", "contains '\"'"),
            ("'a\\b'", "contains '\\\\'"),
            ("'café'", "contains 'é'"),
            ("\"tab\\there\"", "contains '\\t'"),
            (
                long.as_str(),
                "is 65 characters long; at most 64 are allowed",
            ),
            (
                "oauth-token",
                "is reserved for the limit of POST /oauth/token",
            ),
        ] {
            check(
                &limit(&format!(
                    "name: {name}, endpoint: /base, limit: 1, window: 1s, scope: ip"
                )),
                &[("rate_limits[1].name", fragment)],
            );
        }
        let gw = check_ok(&limit(&format!(
            "name: '{}', endpoint: /base, limit: 1, window: 1s, scope: user",
            "n".repeat(64)
        )));
        assert_eq!(gw.rate_limits[1].name.len(), 64);

        let two = |second: &str| {
            format!(
                "rate_limits:\n  - {{ endpoint: /base, limit: 1, window: 1s, scope: ip }}\n  - {{ {second} }}\n"
            )
        };
        check(
            &two("endpoint: /base, limit: 9, window: 1m, scope: ip"),
            &[(
                "rate_limits[1].name",
                "the default name \"ip:/base\" ({scope}:{endpoint}) is already used by rate_limits[0]",
            )],
        );
        check(
            &two("name: 'ip:/base', endpoint: /other, limit: 9, window: 1m, scope: user"),
            &[(
                "rate_limits[1].name",
                "name \"ip:/base\" is already used by rate_limits[0]",
            )],
        );
        check(
            &limit("name: first, endpoint: /other, limit: 9, window: 1m, scope: user"),
            &[(
                "rate_limits[1].name",
                "name \"first\" is already used by rate_limits[0]",
            )],
        );
        // Two limits on one endpoint and scope: naming one of them is enough.
        let gw = check_ok(&two(
            "name: base-burst, endpoint: /base, limit: 9, window: 1m, scope: ip",
        ));
        assert_eq!(gw.rate_limits[0].name, "ip:/base");
        assert_eq!(gw.rate_limits[1].name, "base-burst");
        // An entry whose own errors are reported is not compared.
        check(
            &two("endpoint: /base, window: 1m, scope: ip"),
            &[("rate_limits[1]", "missing field `limit`")],
        );

        // A default name that cannot be a header string asks for a `name`.
        let long_path = format!("/{}", "p".repeat(70));
        check(
            &limit(&format!(
                "endpoint: {long_path}, limit: 1, window: 1s, scope: ip"
            )),
            &[(
                "rate_limits[1].name",
                "the default name ({scope}:{endpoint}) \"ip:/ppp",
            )],
        );
    }

    fn jwt(keys: &str) -> String {
        format!("auth:\n  jwt:\n    keys:\n{keys}")
    }

    #[test]
    fn jwt_settings() {
        let hs = "      - { kid: h, alg: HS256, secret: s }\n";
        check(
            &format!("auth:\n  jwt:\n    leeway: soon\n    keys:\n{hs}"),
            &[("auth.jwt.leeway", "invalid duration \"soon\"")],
        );
        check(
            &format!("auth:\n  jwt:\n    issuer: ''\n    audience: ''\n    keys:\n{hs}"),
            &[
                ("auth.jwt.issuer", "must not be empty"),
                ("auth.jwt.audience", "must not be empty"),
            ],
        );
        check(
            "auth:\n  jwt:\n    keys: []\n",
            &[("auth.jwt.keys", "at least one key is required")],
        );
        check(
            "auth:\n  jwt: {}\n",
            &[("auth.jwt.keys", "at least one key is required")],
        );
        let gw = check_ok(&format!("auth:\n  jwt:\n    leeway: 0s\n    keys:\n{hs}"));
        assert_eq!(gw.jwt.map(|j| j.leeway), Some(Duration::ZERO));
    }

    #[test]
    fn jwt_roles_claim_and_token_size() {
        let hs = "      - { kid: h, alg: HS256, secret: s }\n";
        let jwt_with = |settings: &str| format!("auth:\n  jwt:\n{settings}    keys:\n{hs}");
        check(
            &jwt_with("    roles_claim: ' '\n    max_token_bytes: 0\n"),
            &[
                ("auth.jwt.roles_claim", "must not be empty when set"),
                ("auth.jwt.max_token_bytes", "must be > 0"),
            ],
        );
        check(
            &jwt_with("    roles_claim: [roles]\n    max_token_bytes: -1\n"),
            &[
                ("auth.jwt.roles_claim", "invalid type"),
                ("auth.jwt.max_token_bytes", "invalid type"),
            ],
        );
        check(
            &jwt_with("    max_token_bytes: 8KiB\n"),
            &[("auth.jwt.max_token_bytes", "invalid type")],
        );
        let gw = check_ok(&jwt_with(""));
        assert_eq!(gw.max_token_bytes(), 8192);
        let jwt = gw.jwt.expect("jwt");
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.max_token_bytes, 8192);
        let gw = check_ok(&jwt_with(
            "    roles_claim: ' permissions '\n    max_token_bytes: 16384\n",
        ));
        assert_eq!(gw.max_token_bytes(), 16384);
        let jwt = gw.jwt.expect("jwt");
        assert_eq!(jwt.roles_claim, "permissions", "trimmed");
        assert_eq!(jwt.max_token_bytes, 16384);
    }

    #[test]
    fn jwt_kids_and_algs() {
        check(
            &jwt("      - { kid: a, alg: HS256, secret: s }\n      - { kid: a, alg: HS384, secret: s }\n      - { kid: '', alg: HS512, secret: s }\n"),
            &[("auth.jwt.keys[1].kid", "duplicate kid \"a\" (also jwt.keys[0])"), ("auth.jwt.keys[2].kid", "must not be empty")],
        );
        check(
            &jwt("      - { kid: e, alg: ES384, secret: s }\n"),
            &[(
                "auth.jwt.keys[0].alg",
                "unknown alg \"ES384\" (expected RS256, RS384, RS512, ES256, HS256, HS384 or HS512)",
            )],
        );
        check(
            &jwt("      - { kid: e, alg: hs256, secret: s }\n"),
            &[("auth.jwt.keys[0].alg", "unknown alg \"hs256\"")],
        );
    }

    #[test]
    fn jwt_rsa_keys() {
        check(
            &jwt("      - { kid: r, alg: RS256, public_key_file: keys/rsa.pem, public_key: '-----BEGIN X' }\n"),
            &[("auth.jwt.keys[0]", "set exactly one of public_key_file and public_key")],
        );
        check(
            &jwt("      - { kid: r, alg: RS384 }\n"),
            &[(
                "auth.jwt.keys[0]",
                "RS384 needs public_key_file or public_key",
            )],
        );
        check(
            &jwt("      - { kid: r, alg: RS256, public_key_file: keys/missing.pem }\n"),
            &[("auth.jwt.keys[0].public_key_file", "file not found: ")],
        );
        check(
            &jwt("      - { kid: r, alg: RS256, public_key_file: keys/not-pem.txt }\n"),
            &[(
                "auth.jwt.keys[0].public_key_file",
                "keys/not-pem.txt is not PEM text (no -----BEGIN line)",
            )],
        );
        check(
            &jwt("      - { kid: r, alg: RS256, public_key: 'MIIB...' }\n"),
            &[("auth.jwt.keys[0].public_key", "is not PEM text")],
        );
        check(
            &jwt("      - { kid: r, alg: RS512, public_key_file: keys/rsa.pem, secret: s }\n"),
            &[(
                "auth.jwt.keys[0].secret",
                "not allowed with RS512: RS* keys use public_key_file or public_key",
            )],
        );
        check(
            &jwt("      - { kid: r, alg: RS256, public_key: \"-----BEGIN PUBLIC KEY-----\\nAA\\n-----END PUBLIC KEY-----\" }\n"),
            &[("auth.jwt.keys[0].public_key", "is not a well-formed PUBLIC KEY")],
        );
        let gw = check_ok(&jwt(&format!(
            "      - {{ kid: r, alg: RS512, public_key: {:?} }}\n",
            TEST_PEM
        )));
        let keys = gw.jwt.map(|j| j.keys).unwrap_or_default();
        assert_eq!(
            keys[0].material,
            JwtKeyMaterial::RsaPublicPem(TEST_PEM.into())
        );
    }

    /// A key is checked against its alg: the kind of key, the RSA size, the curve;
    /// and a private key is never taken into the replicated config.
    #[test]
    fn jwt_public_key_kinds() {
        let bad = |alg: &str, file: &str, fragment: &str| {
            check(
                &jwt(&format!(
                    "      - {{ kid: k, alg: {alg}, public_key_file: keys/{file} }}\n"
                )),
                &[("auth.jwt.keys[0].public_key_file", fragment)],
            );
        };
        bad(
            "RS256",
            "ec.pem",
            "ec.pem is an EC P-256 public key; RS256 needs an RSA public key",
        );
        bad(
            "ES256",
            "rsa.pem",
            "rsa.pem is an RSA public key; ES256 needs an EC P-256 public key",
        );
        bad(
            "ES256",
            "ec384.pem",
            "is an EC P-384 public key; ES256 needs an EC P-256 public key",
        );
        bad(
            "RS384",
            "rsa1024.pem",
            "is a 1024-bit RSA key; RS384 needs 2048 to 8192 bits",
        );
        bad("RS256", "rsa1024-pkcs1.pem", "is a 1024-bit RSA key");
        bad(
            "ES256",
            "rsa1024-pkcs1.pem",
            "is an RSA public key; ES256 needs",
        );
        bad(
            "ES256",
            "ed25519.pem",
            "is a public key for Ed25519; ES256 needs",
        );
        bad(
            "RS256",
            "private.pem",
            "is a private key (-----BEGIN PRIVATE KEY-----); configure the public key",
        );
        check(
            &jwt(&format!(
                "      - {{ kid: k, alg: ES256, public_key: {:?} }}\n",
                TEST_PEM
            )),
            &[(
                "auth.jwt.keys[0].public_key",
                "is an RSA public key; ES256 needs an EC P-256 public key",
            )],
        );
    }

    #[test]
    fn jwt_ec_keys() {
        check(
            &jwt("      - { kid: e, alg: ES256 }\n"),
            &[(
                "auth.jwt.keys[0]",
                "ES256 needs public_key_file or public_key",
            )],
        );
        check(
            &jwt("      - { kid: e, alg: ES256, public_key_file: keys/ec.pem, secret: s }\n"),
            &[(
                "auth.jwt.keys[0].secret",
                "not allowed with ES256: ES256 keys use public_key_file or public_key",
            )],
        );
        check(
            &jwt("      - { kid: e, alg: ES256, public_key_file: keys/ec.pem, public_key: x }\n"),
            &[(
                "auth.jwt.keys[0]",
                "set exactly one of public_key_file and public_key",
            )],
        );
        let gw = check_ok(&jwt(&format!(
            "      - {{ kid: f, alg: ES256, public_key_file: keys/ec.pem }}\n      - {{ kid: i, alg: ES256, public_key: {:?} }}\n",
            TEST_EC_PEM
        )));
        let keys = gw.jwt.as_ref().map(|j| j.keys.clone()).unwrap_or_default();
        assert_eq!(keys.len(), 2);
        for key in &keys {
            assert_eq!(key.alg, JwtAlg::ES256);
            assert_eq!(
                key.material,
                JwtKeyMaterial::EcPublicPem(TEST_EC_PEM.into())
            );
        }
        // The file is inlined in the stored spec, like an RSA key's.
        let spec = &gw.spec.auth.jwt.as_ref().expect("jwt spec").keys[0];
        assert_eq!(spec.public_key_file, None);
        assert_eq!(spec.public_key.as_deref(), Some(TEST_EC_PEM));
    }

    #[test]
    fn jwt_hmac_keys() {
        check(
            &jwt("      - { kid: h, alg: HS256 }\n"),
            &[("auth.jwt.keys[0].secret", "HS256 needs a non-empty secret")],
        );
        check(
            &jwt("      - { kid: h, alg: HS256, secret: '' }\n"),
            &[("auth.jwt.keys[0].secret", "HS256 needs a non-empty secret")],
        );
        check(
            &jwt("      - { kid: h, alg: HS256, secret: '${EMPTY}' }\n"),
            &[("auth.jwt.keys[0].secret", "needs a non-empty secret")],
        );
        check(
            &jwt("      - { kid: h, alg: HS384, secret: s, public_key_file: keys/rsa.pem, public_key: x }\n"),
            &[
                ("auth.jwt.keys[0].public_key_file", "not allowed with HS384: HS* keys use secret"),
                ("auth.jwt.keys[0].public_key", "not allowed with HS384"),
            ],
        );
    }

    #[test]
    fn public_key_file_over_the_api_is_an_error() {
        let body = br#"{"auth": {"jwt": {"keys": [{"kid": "r", "alg": "RS256", "public_key_file": "k.pem"}]}}}"#;
        let spec = match crate::parse_gateway_json(body) {
            Ok(spec) => spec,
            Err(e) => panic!("{e}"),
        };
        let e = match Gateway::compile(spec, &Origins::default(), None) {
            Err(e) => e,
            Ok(_) => panic!("compiled"),
        };
        assert_has(
            &e,
            None,
            "auth.jwt.keys[0].public_key_file",
            "cannot be used in config sent over the API",
        );
    }

    #[test]
    fn oauth_settings() {
        check(
            "auth:\n  oauth: { token_ttl: 0s }\n",
            &[("auth.oauth.token_ttl", "must be greater than 0")],
        );
        for bad in ["10/day", "ten/min", "10", "-1/s", "Unlimited", "none", ""] {
            check(
                &format!("auth:\n  oauth: {{ token_endpoint_limit: '{bad}' }}\n"),
                &[(
                    "auth.oauth.token_endpoint_limit",
                    "(expected N/sec, N/min or N/hour); `unlimited` turns the limit off",
                )],
            );
        }
        check(
            "auth:\n  oauth: { issuer: '  ' }\n",
            &[("auth.oauth.issuer", "must not be empty when set")],
        );
        check(
            "auth:\n  oauth: { issuer: [sluice] }\n",
            &[("auth.oauth.issuer", "invalid type")],
        );
        check(
            "auth:\n  oauth: { token_endpoint_limit: 0/min }\n",
            &[(
                "auth.oauth.token_endpoint_limit",
                "must allow at least 1 request",
            )],
        );
        let gw = check_ok("auth:\n  oauth: {}\n");
        assert_eq!(gw.oauth, OAuthConfig::default());
        let gw = check_ok("services: {}\n");
        assert_eq!(
            gw.oauth,
            OAuthConfig::default(),
            "no auth section: defaults"
        );
        assert_eq!(gw.max_token_bytes(), 8192, "no auth.jwt: the default limit");
        assert_eq!(gw.oauth.issuer, "sluice");
        assert_eq!(gw.oauth.token_ttl, Duration::from_secs(3600));
        assert_eq!(
            gw.oauth.token_endpoint_limit,
            Some(Quota {
                count: 10,
                per: Duration::from_secs(60)
            }),
            "limited by default"
        );
        let gw = check_ok(
            "auth:\n  oauth: { issuer: https://gw.example.com, token_endpoint_limit: ' unlimited ' }\n",
        );
        assert_eq!(gw.oauth.issuer, "https://gw.example.com");
        assert_eq!(gw.oauth.token_endpoint_limit, None);
        let gw = check_ok("auth:\n  oauth: { token_endpoint_limit: 3/sec }\n");
        assert_eq!(
            gw.oauth.token_endpoint_limit,
            Some(Quota {
                count: 3,
                per: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn quota_forms() {
        for (text, count, secs) in [
            ("5/sec", 5, 1),
            ("5/s", 5, 1),
            (" 7 / min ", 7, 60),
            ("7/m", 7, 60),
            ("100/hour", 100, 3600),
            ("1/h", 1, 3600),
        ] {
            assert_eq!(
                parse_quota(text),
                Ok(Quota {
                    count,
                    per: Duration::from_secs(secs)
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_in_one_pass() {
        let dir = TestDir::with(&[(
            "a.yaml",
            "
services:
  s: { upstreams: [], timeout: x }
routes:
  - { path: nope, service: t, auth: maybe }
rate_limits:
  - { endpoint: '/u/:id', limit: 0, window: 0s, scope: x }
auth:
  jwt: { keys: [] }
  oauth: { token_ttl: 0s }
",
        )]);
        let e = match load_dir_with_env(dir.path(), &test_env) {
            Err(e) => e,
            Ok(_) => panic!("loaded"),
        };
        assert_eq!(e.0.len(), 11, "{e}");
    }

    /// A value of the wrong type (or a missing field) is reported, and so is every
    /// other problem of its entry; nothing is said about the stand-in that replaced it.
    #[test]
    fn type_errors_do_not_hide_the_rest_of_a_rate_limit() {
        check(
            "rate_limits:\n  - { endpoint: /x, limit: abc, window: bogus, scope: nobody }\n",
            &[
                ("rate_limits[0].limit", "invalid type"),
                ("rate_limits[0].window", "invalid duration \"bogus\""),
                ("rate_limits[0].scope", "unknown scope \"nobody\""),
            ],
        );
        check(
            "rate_limits:\n  - { endpoint: /x, window: bogus, scope: ip, burst: lots }\n",
            &[
                ("rate_limits[0]", "missing field `limit`"),
                ("rate_limits[0].window", "invalid duration \"bogus\""),
                ("rate_limits[0].burst", "invalid type"),
            ],
        );
        // Without its (unreadable) algorithm, burst is not also "only allowed with
        // token_bucket"; endpoint and scope as lists are still named.
        check(
            "rate_limits:\n  - { endpoint: [/x], limit: 5, window: 1s, scope: {a: 1}, algorithm: [token_bucket], burst: 10 }\n  - { endpoint: /y, limit: -1, window: 1s, scope: ip }\n",
            &[
                ("rate_limits[0].endpoint", "invalid type"),
                ("rate_limits[0].scope", "invalid type"),
                ("rate_limits[0].algorithm", "invalid type"),
                ("rate_limits[1].limit", "invalid type"),
            ],
        );
    }

    #[test]
    fn type_errors_do_not_hide_the_rest_of_a_route() {
        // Route 1's methods are unreadable: no overlap is claimed with route 0.
        // Route 2 has no service: it is not also an unknown service "".
        check(
            "routes:\n  - { id: get-x, path: /x, service: user-service, methods: [GET] }\n  - { id: other-x, path: /x, service: user-service, methods: POST, auth: maybe, timeout: soon }\n  - { path: /y, roles: [admin, ''] }\n  - { id: [z], path: /x, service: user-service, methods: [PUT] }\n",
            &[
                ("routes[1].methods", "invalid type"),
                ("routes[1].auth", "unknown auth mode \"maybe\""),
                ("routes[1].timeout", "invalid duration \"soon\""),
                ("routes[2]", "missing field `service`"),
                ("routes[2].roles[1]", "role must not be empty"),
                ("routes[3].id", "invalid type"),
            ],
        );
    }

    #[test]
    fn type_errors_do_not_hide_the_rest_of_a_service() {
        // No "at least one upstream" for the unreadable list, and no "timeout must
        // be shorter than the interval" against a default interval never written.
        check(
            &svc("    upstreams: http://h:1\n    timeout: later\n    load_balancing: random\n    circuit_breaker: { min_requests: many, error_rate: 2 }\n    health_check: { interval: [5s], timeout: 10s, healthy_after: 0 }\n"),
            &[
                ("services.s.upstreams", "invalid type"),
                ("services.s.timeout", "invalid duration \"later\""),
                ("services.s.load_balancing", "unknown variant `random`"),
                ("services.s.circuit_breaker.min_requests", "invalid type"),
                ("services.s.circuit_breaker.error_rate", "must be in (0, 1], got 2"),
                ("services.s.health_check.interval", "invalid type"),
                ("services.s.health_check.healthy_after", "must be > 0"),
            ],
        );
        // One unreadable upstream: the others are still checked, and the stand-in
        // is not also an invalid URL.
        check(
            &svc("    upstreams: [http://h:1, { url: x }, 'ftp://h:2']\n"),
            &[
                ("services.s.upstreams[1]", "invalid type"),
                ("services.s.upstreams[2]", "must use http or https"),
            ],
        );
        // A route to a service with a type error is not a route to an unknown service.
        check(
            "services:\n  t: { upstreams: [http://h:1], timeout: [1s] }\nroutes:\n  - { path: /t, service: t }\n",
            &[("services.t.timeout", "invalid type")],
        );
    }

    #[test]
    fn type_errors_do_not_hide_the_rest_of_auth() {
        check(
            "auth:\n  jwt:\n    leeway: soon\n    keys:\n      - { kid: r, alg: RS256, public_key: [x] }\n      - { alg: HS256, secret: s }\n      - { kid: h, alg: HS256, secret: '' }\n  oauth: { token_ttl: [1h], token_endpoint_limit: 10/day }\n",
            &[
                ("auth.jwt.leeway", "invalid duration \"soon\""),
                ("auth.jwt.keys[0].public_key", "invalid type"),
                ("auth.jwt.keys[1]", "missing field `kid`"),
                ("auth.jwt.keys[2].secret", "HS256 needs a non-empty secret"),
                ("auth.oauth.token_ttl", "invalid type"),
                ("auth.oauth.token_endpoint_limit", "invalid rate"),
            ],
        );
    }

    #[test]
    fn key_paths_inside_a_stand_in() {
        assert!(within("a", "a"));
        assert!(within("a.b", "a"));
        assert!(within("a[0].b", "a"));
        assert!(within("routes[1].methods[0]", "routes[1].methods"));
        assert!(!within("ab", "a"));
        assert!(!within("routes[10]", "routes[1]"));
        assert!(!within("a", "a.b"));
    }
}
