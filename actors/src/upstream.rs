//! Per-service upstream state shared between the request path and the service's
//! [`crate::UpstreamActor`]: which targets exist, which are healthy, how many
//! requests each has in flight, where round-robin is, and the breaker's verdict.
//!
//! Everything here is atomics or `ArcSwap`: the request path reads and bumps them
//! without locks and reports outcomes with `do_send`; only the actor writes the
//! health and breaker views.

use crate::breaker::BreakerState;
use arc_swap::ArcSwap;
use cluster_config::{LoadBalancing, Service, Upstream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::time::Instant;

/// One request's result, reported to the service's actor after the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, actix::Message)]
#[rtype(result = "()")]
pub struct Outcome {
    /// False for 5xx, timeouts and connect errors.
    pub success: bool,
    /// Ordinary successes counted on the request path since the previous message:
    /// they happened before this outcome and are recorded first, so a lagging
    /// actor still sees failures and successes in the order they happened.
    pub successes_before: u32,
}

/// What the circuit check says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Breaker closed (or disabled): go ahead.
    Allowed,
    /// Breaker half-open: this request is one of the few probes.
    Probe,
    /// Breaker open: answer 503 at once; the breaker may let requests through
    /// again after `retry_after`.
    Rejected { retry_after: Duration },
}

/// The breaker's verdict as the request path reads it; written by the actor.
#[derive(Debug)]
pub struct BreakerView {
    state: AtomicU8,
    /// Milliseconds since the pool's `epoch` at which an open breaker turns half-open.
    open_until_ms: AtomicU64,
    /// Probe requests a half-open breaker still admits.
    probes: AtomicU32,
    /// False when the service's breaker is disabled: outcomes are not reported.
    enabled: AtomicBool,
}

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
    /// Current definition; swapped in place when a reload changes anything but
    /// the upstream list, so the targets' and breaker's state survive.
    service: ArcSwap<Service>,
    targets: Vec<Target>,
    next: AtomicUsize,
    pub breaker: BreakerView,
    /// Time origin for `BreakerView::open_until_ms`.
    epoch: Instant,
    /// The service's actor, set once it is started; outcomes go there.
    reporter: OnceLock<actix::Recipient<Outcome>>,
    /// Successes not yet handed to the actor (see [`UpstreamPool::report`]).
    pending_ok: AtomicU32,
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
        let enabled = service.circuit_breaker.enabled;
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
            service: ArcSwap::new(service),
            targets,
            next: AtomicUsize::new(0),
            breaker: BreakerView {
                state: AtomicU8::new(BreakerState::Closed as u8),
                open_until_ms: AtomicU64::new(0),
                probes: AtomicU32::new(0),
                enabled: AtomicBool::new(enabled),
            },
            epoch: Instant::now(),
            reporter: OnceLock::new(),
            pending_ok: AtomicU32::new(0),
        }
    }

    pub fn service(&self) -> Arc<Service> {
        self.service.load_full()
    }

    pub fn service_name(&self) -> String {
        self.service.load().name.clone()
    }

    /// True when `next` can replace the current definition in place (same targets).
    pub fn can_update_to(&self, next: &Service) -> bool {
        self.service.load().upstreams == next.upstreams
    }

    /// Swaps the definition in place; the caller tells the actor (`Reconfigure`).
    pub fn update_service(&self, next: Arc<Service>) {
        self.breaker
            .enabled
            .store(next.circuit_breaker.enabled, Ordering::Relaxed);
        self.service.store(next);
    }

    pub(crate) fn set_reporter(&self, r: actix::Recipient<Outcome>) {
        let _ = self.reporter.set(r);
    }

    /// Step "circuit check" of the request path: reads atomics only.
    pub fn admit(&self) -> Admission {
        match self.breaker_state() {
            BreakerState::Closed => Admission::Allowed,
            BreakerState::HalfOpen => {
                let took = self
                    .breaker
                    .probes
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| p.checked_sub(1))
                    .is_ok();
                if took {
                    Admission::Probe
                } else {
                    Admission::Rejected {
                        retry_after: Duration::from_secs(1),
                    }
                }
            }
            BreakerState::Open => {
                let until = self.breaker.open_until_ms.load(Ordering::Acquire);
                let now = self.epoch.elapsed().as_millis() as u64;
                Admission::Rejected {
                    retry_after: Duration::from_millis(until.saturating_sub(now)),
                }
            }
        }
    }

    pub fn breaker_state(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.state.load(Ordering::Acquire))
    }

    /// Reports a request's outcome to the actor without waiting for it.
    ///
    /// Failures and probe results go at once with `do_send`, carrying the count of
    /// ordinary successes since the last message. Ordinary successes only bump
    /// that counter (the actor also drains it on a short tick): a healthy service
    /// costs one atomic add per request instead of a cross-thread message.
    pub fn report(&self, success: bool, admission: Admission) {
        if !self.breaker.enabled.load(Ordering::Relaxed) {
            return;
        }
        if success && admission == Admission::Allowed {
            self.pending_ok.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(r) = self.reporter.get() {
            r.do_send(Outcome {
                success,
                successes_before: self.take_successes(),
            });
        }
    }

    /// A request admitted as a probe ended without a verdict on the upstream (the
    /// client failed or went away): its probe slot goes back, so clients cannot
    /// use up a half-open breaker's probes.
    pub fn release(&self, admission: Admission) {
        if admission == Admission::Probe && self.breaker_state() == BreakerState::HalfOpen {
            self.breaker.probes.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Successes reported since the last call (actor only).
    pub(crate) fn take_successes(&self) -> u32 {
        self.pending_ok.swap(0, Ordering::Relaxed)
    }

    /// Publishes the breaker's state (actor only).
    pub(crate) fn publish_breaker(
        &self,
        state: BreakerState,
        open_until: Option<Instant>,
        probes: u32,
    ) {
        let until = open_until.map_or(0, |t| t.saturating_duration_since(self.epoch).as_millis());
        self.breaker
            .open_until_ms
            .store(until as u64, Ordering::Release);
        self.breaker.probes.store(probes, Ordering::Release);
        self.breaker.state.store(state as u8, Ordering::Release);
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
        let index = match self.service.load().load_balancing {
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

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_config::{CircuitBreakerConfig, Service};

    fn service(n: usize, lb: LoadBalancing) -> Arc<Service> {
        Arc::new(Service {
            name: "svc".into(),
            upstreams: (0..n)
                .map(|i| Upstream {
                    url: format!("http://10.0.0.{i}:80"),
                    scheme: "http".into(),
                    authority: format!("10.0.0.{i}:80"),
                    base_path: String::new(),
                })
                .collect(),
            load_balancing: lb,
            timeout: Duration::from_secs(30),
            circuit_breaker: CircuitBreakerConfig::default(),
            health_check: None,
        })
    }

    fn picks(pool: &UpstreamPool, n: usize) -> Vec<usize> {
        (0..n)
            .map(|_| pool.pick(None).expect("a target").index)
            .collect()
    }

    #[test]
    fn round_robin_rotates_and_skips_unhealthy_targets() {
        let pool = UpstreamPool::new(service(3, LoadBalancing::RoundRobin));
        assert_eq!(picks(&pool, 6), vec![0, 1, 2, 0, 1, 2]);
        pool.targets()[1].set_health(TargetHealth::Unhealthy);
        assert!(!picks(&pool, 6).contains(&1));
        // every target unhealthy: try them anyway rather than fail for sure
        for t in pool.targets() {
            t.set_health(TargetHealth::Unhealthy);
        }
        assert!(!pool.has_usable_target());
        assert_eq!(picks(&pool, 3).len(), 3);
    }

    #[test]
    fn a_retry_never_picks_the_target_that_just_failed() {
        let pool = UpstreamPool::new(service(2, LoadBalancing::RoundRobin));
        for _ in 0..10 {
            assert_eq!(pool.pick(Some(0)).expect("other").index, 1);
        }
        let single = UpstreamPool::new(service(1, LoadBalancing::RoundRobin));
        assert!(single.pick(Some(0)).is_none());
    }

    #[test]
    fn least_requests_prefers_the_less_busy_of_two() {
        let pool = UpstreamPool::new(service(2, LoadBalancing::LeastRequests));
        // hold five requests on whichever target comes first
        let busy: Vec<_> = (0..5).map(|_| pool.pick(None).expect("t")).collect();
        let first = busy[0].index;
        let held: Vec<_> = busy.into_iter().filter(|g| g.index == first).collect();
        assert!(!held.is_empty());
        for _ in 0..10 {
            assert_ne!(pool.pick(None).expect("t").index, first);
        }
        drop(held);
        assert_eq!(
            pool.targets()[first].in_flight(),
            0,
            "guards release their count"
        );
    }

    #[test]
    fn admission_follows_the_published_breaker_state() {
        let pool = UpstreamPool::new(service(1, LoadBalancing::RoundRobin));
        assert_eq!(pool.admit(), Admission::Allowed);
        let until = Instant::now() + Duration::from_secs(30);
        pool.publish_breaker(BreakerState::Open, Some(until), 0);
        match pool.admit() {
            Admission::Rejected { retry_after } => {
                assert!(
                    retry_after > Duration::from_secs(28) && retry_after <= Duration::from_secs(30)
                )
            }
            other => panic!("{other:?}"),
        }
        pool.publish_breaker(BreakerState::HalfOpen, None, 2);
        assert_eq!(pool.admit(), Admission::Probe);
        assert_eq!(pool.admit(), Admission::Probe);
        assert!(
            matches!(pool.admit(), Admission::Rejected { .. }),
            "only close_after probes"
        );
    }
}
