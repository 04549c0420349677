//! Per-service upstream state shared between the request path and (soon) the
//! service's `UpstreamActor`: which targets exist, which are healthy, how many
//! requests each has in flight, and where round-robin is.
//!
//! Everything here is atomics: the request path reads and bumps them without locks.

use cluster_config::{LoadBalancing, Service, Upstream};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;

/// Health of one target as the request path sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TargetHealth {
    /// No active check configured (or none has run yet): in rotation.
    Unchecked = 0,
    Healthy = 1,
    Unhealthy = 2,
}

impl TargetHealth {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => TargetHealth::Healthy,
            2 => TargetHealth::Unhealthy,
            _ => TargetHealth::Unchecked,
        }
    }
}

#[derive(Debug)]
pub struct Target {
    pub upstream: Upstream,
    health: AtomicU8,
    in_flight: AtomicUsize,
}

impl Target {
    pub fn health(&self) -> TargetHealth {
        TargetHealth::from_u8(self.health.load(Ordering::Relaxed))
    }

    /// Written by the health checker (the service's actor).
    pub fn set_health(&self, h: TargetHealth) {
        self.health.store(h as u8, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn usable(&self) -> bool {
        self.health() != TargetHealth::Unhealthy
    }
}

/// The targets of one service. Built from config; kept across reloads while the
/// service's upstream list is unchanged, so its state survives.
#[derive(Debug)]
pub struct UpstreamPool {
    pub service: Arc<Service>,
    targets: Vec<Target>,
    next: AtomicUsize,
}

/// Counts a request against a target while it is held; dropping it ends the count.
#[derive(Debug)]
pub struct TargetGuard<'a> {
    pub index: usize,
    pub target: &'a Target,
}

impl Drop for TargetGuard<'_> {
    fn drop(&mut self) {
        self.target.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl UpstreamPool {
    pub fn new(service: Arc<Service>) -> Self {
        let targets = service
            .upstreams
            .iter()
            .map(|u| Target {
                upstream: u.clone(),
                health: AtomicU8::new(TargetHealth::Unchecked as u8),
                in_flight: AtomicUsize::new(0),
            })
            .collect();
        UpstreamPool {
            service,
            targets,
            next: AtomicUsize::new(0),
        }
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// True when at least one target is healthy or unchecked (what `/ready` asks).
    pub fn has_usable_target(&self) -> bool {
        self.targets.iter().any(Target::usable)
    }

    /// Picks a target for a request, skipping `exclude` (the target a failed first
    /// attempt used). Unhealthy targets are skipped; if every target is unhealthy the
    /// pick falls back to all of them, so a wrong health verdict degrades to
    /// "try anyway" rather than to a guaranteed failure.
    pub fn pick(&self, exclude: Option<usize>) -> Option<TargetGuard<'_>> {
        let n = self.targets.len();
        if n == 0 || (n == 1 && exclude == Some(0)) {
            return None;
        }
        let candidate =
            |i: usize, strict: bool| Some(i) != exclude && (!strict || self.targets[i].usable());
        let index = match self.service.load_balancing {
            LoadBalancing::RoundRobin => self.pick_round_robin(&candidate),
            LoadBalancing::LeastRequests => self.pick_least_requests(&candidate),
        }?;
        let target = &self.targets[index];
        target.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(TargetGuard { index, target })
    }

    fn pick_round_robin(&self, ok: &dyn Fn(usize, bool) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for strict in [true, false] {
            if let Some(i) = (0..n).map(|k| (start + k) % n).find(|&i| ok(i, strict)) {
                return Some(i);
            }
        }
        None
    }

    /// Power of two choices on in-flight counts: the next two usable targets in
    /// rotation (cheap, no RNG), the less busy one wins.
    fn pick_least_requests(&self, ok: &dyn Fn(usize, bool) -> bool) -> Option<usize> {
        let n = self.targets.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for strict in [true, false] {
            let mut it = (0..n).map(|k| (start + k) % n).filter(|&i| ok(i, strict));
            match (it.next(), it.next()) {
                (Some(a), Some(b)) => {
                    let busier = self.targets[a].in_flight() > self.targets[b].in_flight();
                    return Some(if busier { b } else { a });
                }
                (Some(a), None) => return Some(a),
                _ => {}
            }
        }
        None
    }
}
