//! The node's shared, hot state: one immutable [`Snapshot`] behind an `ArcSwap`,
//! replaced whole when the config changes, plus the metrics and drain flag.
//!
//! Nothing here locks: the request path does one `ArcSwap` load per request.

use crate::telemetry::Metrics;
use arc_swap::ArcSwap;
use cluster_config::Gateway;
use sluice_actors::upstream::{TargetHealth, UpstreamPool};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Everything a request needs to know about the config, as one value.
pub struct Snapshot {
    pub gateway: Arc<Gateway>,
    /// Service name -> its targets and their state.
    pub pools: HashMap<String, Arc<UpstreamPool>>,
    /// Config version: bumps on every applied change.
    pub version: u64,
}

impl Snapshot {
    /// Builds a snapshot for `gateway`, carrying over the pool (and so the target
    /// state) of every service whose definition did not change.
    pub fn build(gateway: Gateway, previous: Option<&Snapshot>, version: u64) -> Snapshot {
        let pools = gateway
            .services
            .iter()
            .map(|(name, svc)| {
                let kept = previous
                    .and_then(|p| p.pools.get(name))
                    .filter(|pool| *pool.service == **svc)
                    .cloned();
                let pool = kept.unwrap_or_else(|| Arc::new(UpstreamPool::new(svc.clone())));
                (name.clone(), pool)
            })
            .collect();
        Snapshot {
            gateway: Arc::new(gateway),
            pools,
            version,
        }
    }
}

/// State shared by every worker thread and the control tasks.
pub struct Shared {
    pub snapshot: ArcSwap<Snapshot>,
    pub metrics: Metrics,
    /// Set on SIGTERM: `/ready` turns 503 so load balancers stop sending traffic.
    pub draining: AtomicBool,
    pub started: Instant,
    pub node_id: u64,
    /// Whether the data plane speaks TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
}

impl Shared {
    pub fn new(snapshot: Snapshot, metrics: Metrics, node_id: u64, tls: bool) -> Shared {
        metrics.config_version.set(snapshot.version as i64);
        let shared = Shared {
            snapshot: ArcSwap::from_pointee(snapshot),
            metrics,
            draining: AtomicBool::new(false),
            started: Instant::now(),
            node_id,
            tls,
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
        for (name, pool) in &snap.pools {
            for t in pool.targets() {
                let up = i64::from(t.health() != TargetHealth::Unhealthy);
                gauge.with_label_values(&[name, &t.upstream.url]).set(up);
            }
        }
    }

    /// Swaps in a new gateway config atomically; in-flight requests finish on the
    /// snapshot they started with.
    pub fn install(&self, gateway: Gateway) -> u64 {
        let current = self.snapshot.load();
        let version = current.version + 1;
        let next = Snapshot::build(gateway, Some(&current), version);
        self.snapshot.store(Arc::new(next));
        self.metrics.config_version.set(version as i64);
        self.publish_health();
        version
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}
