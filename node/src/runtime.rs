//! The node's shared, hot state: one immutable [`Snapshot`] behind an `ArcSwap`,
//! replaced whole when the config changes, plus the metrics and drain flag.
//!
//! Nothing here locks: the request path does one `ArcSwap` load per request.

use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use cluster_config::{Gateway, Route};
use sluice_actors::upstream::{TargetHealth, UpstreamPool};
use sluice_actors::{BreakerState, Transition, UpstreamEvents, UpstreamHandle};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// A route's latency histograms, resolved once per snapshot so the request path
/// skips the label hashing and locking of `with_label_values`.
pub struct RouteMetrics {
    pub request_duration: prometheus::Histogram,
    pub upstream_duration: prometheus::Histogram,
}

/// Everything a request needs to know about the config, as one value.
pub struct Snapshot {
    pub gateway: Arc<Gateway>,
    /// Keyed by the address of the route's `Arc` in `gateway.routes`.
    route_metrics: HashMap<usize, RouteMetrics>,
    /// Service name -> its targets, their state and the actor that owns it.
    pub pools: HashMap<String, UpstreamHandle>,
    /// Config version: the Raft log index the config was applied at (0 while a
    /// fresh node serves its own files before the cluster has a config).
    pub version: u64,
}

impl Snapshot {
    /// Builds a snapshot for `gateway`. A service whose targets are unchanged keeps
    /// its pool and actor (so health, in-flight counts and an open breaker survive a
    /// reload), updated in place if anything else changed; others get new ones.
    pub fn build(
        gateway: Gateway,
        previous: Option<&Snapshot>,
        version: u64,
        events: &Arc<dyn UpstreamEvents>,
        metrics: &Metrics,
    ) -> Snapshot {
        let route_metrics = gateway
            .routes
            .routes()
            .iter()
            .map(|r| {
                let rm = RouteMetrics {
                    request_duration: metrics.request_duration.with_label_values(&[&r.template]),
                    upstream_duration: metrics
                        .upstream_duration
                        .with_label_values(&[&r.service, &r.template]),
                };
                (Arc::as_ptr(r) as usize, rm)
            })
            .collect();
        let pools = gateway
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
                        events.clone(),
                    ),
                };
                (name.clone(), handle)
            })
            .collect();
        Snapshot {
            gateway: Arc::new(gateway),
            route_metrics,
            pools,
            version,
        }
    }
}

impl Snapshot {
    /// The latency histograms of `route` (a route of this snapshot).
    pub fn route_metrics(&self, route: &Arc<Route>) -> Option<&RouteMetrics> {
        self.route_metrics.get(&(Arc::as_ptr(route) as usize))
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

/// State shared by every worker thread and the control tasks.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub events: Arc<dyn UpstreamEvents>,
    pub metrics: Metrics,
    /// Set on SIGTERM: `/ready` turns 503 so load balancers stop sending traffic.
    pub draining: AtomicBool,
    pub started: Instant,
    pub node_id: u64,
    /// Whether the data plane speaks TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
    /// Per-request metrics on (default); off only to measure what they cost.
    pub request_metrics: bool,
}

impl Shared {
    pub fn new(
        snapshot: Snapshot,
        events: Arc<dyn UpstreamEvents>,
        metrics: Metrics,
        node_id: u64,
        tls: bool,
    ) -> Shared {
        metrics.config_version.set(snapshot.version as i64);
        let shared = Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            events,
            metrics,
            draining: AtomicBool::new(false),
            started: Instant::now(),
            node_id,
            tls,
            request_metrics: true,
        };
        shared.publish_health();
        shared
    }

    /// Mirrors every target's rotation state into `gateway_upstream_health`;
    /// targets of removed services disappear from the metric.
    pub fn publish_health(&self) {
        let snap = self.snapshot.load();
        let gauge = &self.metrics.upstream_health;
        gauge.reset();
        self.metrics.breaker_state.reset();
        for (name, handle) in &snap.pools {
            let state: BreakerState = handle.pool.breaker_state();
            self.metrics
                .breaker_state
                .with_label_values(&[name])
                .set(state as i64);
            for t in handle.pool.targets() {
                let up = i64::from(t.health() != TargetHealth::Unhealthy);
                gauge.with_label_values(&[name, &t.upstream.url]).set(up);
            }
        }
    }

    /// Swaps in a new gateway config atomically; in-flight requests finish on the
    /// snapshot they started with.
    pub fn install(&self, gateway: Gateway, version: u64) {
        let current = self.snapshot.load();
        let next = Snapshot::build(
            gateway,
            Some(&current),
            version,
            &self.events,
            &self.metrics,
        );
        self.snapshot.store(Arc::new(next));
        self.metrics.config_version.set(version as i64);
        self.publish_health();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
