//! Logs and metrics. Metric label sets are fixed here; `route` is always the route
//! template (or `unmatched`), never the raw path, so cardinality stays bounded.

use cluster_config::LogFormat;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sluice_actors::{Transition, UpstreamEvents};
use tracing_subscriber::EnvFilter;

/// Sets up `tracing` once per process. `RUST_LOG`, when set, wins over `level`.
pub fn init_logging(format: LogFormat, level: &str) {
    // openraft narrates every election and append at info; keep it to warnings
    // unless the operator's directive names it.
    let mut directive = if level.contains("openraft") {
        level.to_owned()
    } else {
        format!("{level},openraft=warn")
    };
    // actix-http logs every malformed request at ERROR ("stream error: request parse
    // error"), so any client could flood the log. The listener counts them
    // (`gateway_malformed_requests_total`) and logs them at debug instead.
    if !level.contains("actix_http") {
        directive.push_str(",actix_http::h1::dispatcher=off");
    }
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&directive))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests, repeated runs in one process) is harmless: keep the first.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Label used for requests that matched no route.
pub const UNMATCHED: &str = "unmatched";

pub struct Metrics {
    registry: Registry,
    pub requests_total: IntCounterVec,
    pub request_duration: HistogramVec,
    pub upstream_duration: HistogramVec,
    /// Per request, total time minus time waiting on the upstream: what the
    /// gateway itself costs (the SLO's p99 comes from this, not from a difference
    /// of two p99s).
    pub overhead: HistogramVec,
    pub in_flight: IntGauge,
    pub config_reloads: IntCounterVec,
    pub config_version: IntGauge,
    pub upstream_health: IntGaugeVec,
    pub breaker_state: IntGaugeVec,
    pub breaker_transitions: IntCounterVec,
    pub auth_failures: IntCounterVec,
    /// Requests refused by a rate limit, by route and the scope the key was taken
    /// from (`ip` for a `user`/`client` policy on an anonymous request).
    pub rate_limit_violations: IntCounterVec,
    /// Keys with limiter state on this node; set at each scrape.
    pub rate_limit_keys: IntGauge,
    /// HTTP/2 connections cut for a flood (see `listener::is_h2_flood`).
    pub h2_floods: prometheus::IntCounter,
    /// Requests the HTTP parser refused (bad head, bad chunk, bad length): counted
    /// and logged at debug only, so a client cannot flood the log with them.
    pub malformed_requests: prometheus::IntCounter,
    /// Data-plane connections closed by the gateway because they sent no complete
    /// request head within `node.client_header_timeout`.
    pub header_timeouts: prometheus::IntCounter,
    /// Data-plane connections open now (idle ones included).
    pub connections: IntGauge,
    pub raft_leader: IntGauge,
    pub raft_term: IntGauge,
    pub raft_applied_index: IntGauge,
    /// 1 while this node hears from a quorum (see `sluice_raft::node::has_quorum`):
    /// a leader cut off from its quorum still reports itself leader.
    pub raft_quorum: IntGauge,
    pub raft_commit_duration: prometheus::Histogram,
    /// Webhook attempts made by this node (the leader), by subscription and outcome.
    pub webhook_deliveries: IntCounterVec,
    pub webhook_delivery_duration: prometheus::Histogram,
    /// From the replicated state, so every node exports the same values.
    pub webhook_queue_depth: IntGaugeVec,
    pub webhook_oldest_pending: prometheus::GaugeVec,
    pub webhook_dead_letters: IntGauge,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests_total = IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests answered, by route template",
            ),
            &["method", "route", "status"],
        )?;
        let request_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request received to response head sent",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_duration_seconds",
                "Time from upstream request sent to upstream response head",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["service", "route"],
        )?;
        let overhead = HistogramVec::new(
            HistogramOpts::new(
                "gateway_overhead_seconds",
                "Per request, time spent in the gateway: total time minus time waiting on the upstream",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "gateway_in_flight_requests",
            "Requests being handled right now",
        )?;
        let config_reloads = IntCounterVec::new(
            Opts::new("gateway_config_reloads_total", "Config reload attempts"),
            &["result"],
        )?;
        let config_version = IntGauge::new(
            "gateway_config_version",
            "Version of the gateway config this node serves",
        )?;
        let upstream_health = IntGaugeVec::new(
            Opts::new(
                "gateway_upstream_health",
                "1 when the target is in rotation (healthy or unchecked), else 0",
            ),
            &["service", "target"],
        )?;
        let breaker_state = IntGaugeVec::new(
            Opts::new(
                "gateway_circuit_breaker_state",
                "Circuit breaker state per service: 0 closed, 1 open, 2 half-open",
            ),
            &["service"],
        )?;
        let breaker_transitions = IntCounterVec::new(
            Opts::new(
                "gateway_circuit_breaker_transitions_total",
                "Circuit breaker state changes per service, by new state",
            ),
            &["service", "to"],
        )?;
        let raft_leader = IntGauge::new("gateway_raft_leader", "1 on the Raft leader, else 0")?;
        let raft_term = IntGauge::new("gateway_raft_term", "Current Raft term")?;
        let raft_applied_index = IntGauge::new(
            "gateway_raft_applied_index",
            "Last Raft log index applied here (the config version)",
        )?;
        let raft_quorum = IntGauge::new(
            "gateway_raft_quorum",
            "1 when this node has heard from a quorum within the election timeout, else 0",
        )?;
        let raft_commit_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "gateway_raft_commit_duration_seconds",
                "Time for a write proposed through this node to commit and apply",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        registry.register(Box::new(raft_leader.clone()))?;
        registry.register(Box::new(raft_term.clone()))?;
        registry.register(Box::new(raft_applied_index.clone()))?;
        registry.register(Box::new(raft_quorum.clone()))?;
        registry.register(Box::new(raft_commit_duration.clone()))?;
        registry.register(Box::new(breaker_state.clone()))?;
        registry.register(Box::new(breaker_transitions.clone()))?;
        let auth_failures = IntCounterVec::new(
            Opts::new(
                "gateway_auth_failures_total",
                "Requests refused by authentication or authorization, by route and reason",
            ),
            &["route", "reason"],
        )?;
        registry.register(Box::new(auth_failures.clone()))?;
        let rate_limit_violations = IntCounterVec::new(
            Opts::new(
                "gateway_rate_limit_violations_total",
                "Requests refused by a rate limit (429), by route and the scope counted",
            ),
            &["route", "scope"],
        )?;
        let rate_limit_keys = IntGauge::new(
            "gateway_rate_limit_keys",
            "Rate-limit keys (policy and client) with state on this node",
        )?;
        registry.register(Box::new(rate_limit_violations.clone()))?;
        registry.register(Box::new(rate_limit_keys.clone()))?;
        let h2_floods = prometheus::IntCounter::new(
            "gateway_h2_floods_refused_total",
            "HTTP/2 connections cut for a flood (empty DATA frames, rapid resets, CONTINUATION floods)",
        )?;
        registry.register(Box::new(h2_floods.clone()))?;
        let malformed_requests = prometheus::IntCounter::new(
            "gateway_malformed_requests_total",
            "Requests refused by the HTTP parser (malformed head, chunk or length)",
        )?;
        let header_timeouts = prometheus::IntCounter::new(
            "gateway_client_header_timeouts_total",
            "Connections closed for sending no complete request head in time",
        )?;
        let connections = IntGauge::new(
            "gateway_connections",
            "Data-plane client connections open now, idle ones included",
        )?;
        registry.register(Box::new(malformed_requests.clone()))?;
        registry.register(Box::new(header_timeouts.clone()))?;
        registry.register(Box::new(connections.clone()))?;
        registry.register(Box::new(requests_total.clone()))?;
        registry.register(Box::new(request_duration.clone()))?;
        registry.register(Box::new(upstream_duration.clone()))?;
        registry.register(Box::new(overhead.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(config_reloads.clone()))?;
        registry.register(Box::new(config_version.clone()))?;
        registry.register(Box::new(upstream_health.clone()))?;
        let webhook_deliveries = IntCounterVec::new(
            Opts::new(
                "gateway_webhook_deliveries_total",
                "Webhook delivery attempts, by subscription and outcome (delivered, failed, dead, gone)",
            ),
            &["subscription", "outcome"],
        )?;
        let webhook_delivery_duration = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "gateway_webhook_delivery_duration_seconds",
                "Time of one webhook attempt, request to bounded response read",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let webhook_queue_depth = IntGaugeVec::new(
            Opts::new(
                "gateway_webhook_queue_depth",
                "Pending webhook deliveries per subscription (replicated state)",
            ),
            &["subscription"],
        )?;
        let webhook_oldest_pending = prometheus::GaugeVec::new(
            Opts::new(
                "gateway_webhook_oldest_pending_seconds",
                "Age of the oldest pending delivery per subscription (replicated state)",
            ),
            &["subscription"],
        )?;
        let webhook_dead_letters = IntGauge::new(
            "gateway_webhook_dead_letters",
            "Dead-lettered webhook deliveries kept (replicated state)",
        )?;
        registry.register(Box::new(webhook_deliveries.clone()))?;
        registry.register(Box::new(webhook_delivery_duration.clone()))?;
        registry.register(Box::new(webhook_queue_depth.clone()))?;
        registry.register(Box::new(webhook_oldest_pending.clone()))?;
        registry.register(Box::new(webhook_dead_letters.clone()))?;
        // Both results exist from the start, so a dashboard can tell "0" from "absent".
        config_reloads.with_label_values(&["ok"]);
        config_reloads.with_label_values(&["error"]);
        Ok(Metrics {
            registry,
            requests_total,
            request_duration,
            upstream_duration,
            overhead,
            in_flight,
            config_reloads,
            config_version,
            upstream_health,
            breaker_state,
            breaker_transitions,
            auth_failures,
            rate_limit_violations,
            rate_limit_keys,
            h2_floods,
            malformed_requests,
            header_timeouts,
            connections,
            raft_leader,
            raft_term,
            raft_applied_index,
            raft_quorum,
            raft_commit_duration,
            webhook_deliveries,
            webhook_delivery_duration,
            webhook_queue_depth,
            webhook_oldest_pending,
            webhook_dead_letters,
        })
    }

    pub fn events(&self) -> MetricEvents {
        MetricEvents {
            breaker_state: self.breaker_state.clone(),
            breaker_transitions: self.breaker_transitions.clone(),
            upstream_health: self.upstream_health.clone(),
        }
    }

    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Turns the upstream actors' decisions into metrics.
pub struct MetricEvents {
    pub breaker_state: prometheus::IntGaugeVec,
    pub breaker_transitions: prometheus::IntCounterVec,
    pub upstream_health: prometheus::IntGaugeVec,
}

impl UpstreamEvents for MetricEvents {
    fn breaker_changed(&self, service: &str, t: &Transition) {
        self.breaker_state
            .with_label_values(&[service])
            .set(t.to as i64);
        self.breaker_transitions
            .with_label_values(&[service, t.to.as_str()])
            .inc();
    }

    fn health_changed(&self, service: &str, target: &str, in_rotation: bool) {
        self.upstream_health
            .with_label_values(&[service, target])
            .set(i64::from(in_rotation));
    }
}
