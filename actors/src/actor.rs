//! `UpstreamActor`: one per service. It owns the service's circuit breaker and
//! active health checks and publishes their verdicts into the service's
//! [`UpstreamPool`], which the request path reads. The request path never awaits
//! it: outcomes arrive with `do_send`.
//!
//! The actor runs under an actix `Supervisor`: a panic while handling a message is
//! caught, the actor stops, and the supervisor restarts it with a fresh (closed)
//! breaker. It holds the pool weakly, so dropping a removed service's pool ends it.

use crate::breaker::{Breaker, BreakerState, Transition};
use crate::upstream::{Outcome, TargetHealth, UpstreamPool};
use actix::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use tokio::time::Instant;

/// Longest health-check interval or timeout the actor schedules (validation
/// refuses longer ones).
const MAX_HEALTH_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);
use tracing::{error, info, warn};

/// How often successes counted on the request path are moved into the window.
const SUCCESS_DRAIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Where the actor reports what it decided (metrics, in the node).
pub trait UpstreamEvents: Send + Sync + 'static {
    fn breaker_changed(&self, service: &str, transition: &Transition);
    fn health_changed(&self, service: &str, target: &str, in_rotation: bool);
}

/// The service's definition changed in place (same targets): re-read it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Reconfigure;

/// A service's pool plus its actor; what the node's snapshot holds per service.
#[derive(Clone)]
pub struct UpstreamHandle {
    pub pool: Arc<UpstreamPool>,
    addr: Addr<UpstreamActor>,
}

impl UpstreamHandle {
    /// Starts the actor for `pool` on the current arbiter.
    pub fn start(pool: Arc<UpstreamPool>, events: Arc<dyn UpstreamEvents>) -> UpstreamHandle {
        let weak = Arc::downgrade(&pool);
        let addr = Supervisor::start(move |_| UpstreamActor::new(weak, events));
        pool.set_reporter(addr.clone().recipient());
        UpstreamHandle { pool, addr }
    }

    /// Applies a new definition with the same targets, keeping all state.
    pub fn reconfigure(&self, service: Arc<cluster_config::Service>) {
        self.pool.update_service(service);
        self.addr.do_send(Reconfigure);
    }
}

/// Consecutive results of one target's active checks.
#[derive(Debug, Default, Clone, Copy)]
struct Streak {
    passed: u32,
    failed: u32,
}

pub struct UpstreamActor {
    pool: Weak<UpstreamPool>,
    service: String,
    breaker: Breaker,
    events: Arc<dyn UpstreamEvents>,
    /// For active health checks only; the proxy has its own per-worker clients.
    client: awc::Client,
    streaks: Vec<Streak>,
    health_task: Option<SpawnHandle>,
    half_open_timer: Option<SpawnHandle>,
}

impl UpstreamActor {
    fn new(pool: Weak<UpstreamPool>, events: Arc<dyn UpstreamEvents>) -> Self {
        let (service, cfg, n) = match pool.upgrade() {
            Some(p) => {
                let s = p.service();
                (s.name.clone(), s.circuit_breaker.clone(), p.targets().len())
            }
            None => (String::new(), Default::default(), 0),
        };
        UpstreamActor {
            pool,
            service,
            breaker: Breaker::new(cfg, Instant::now()),
            events,
            client: awc::Client::builder()
                .disable_redirects()
                .no_default_headers()
                .finish(),
            streaks: vec![Streak::default(); n],
            health_task: None,
            half_open_timer: None,
        }
    }

    fn apply(&mut self, t: Transition, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let probes = match t.to {
            BreakerState::HalfOpen => self.breaker.config().close_after,
            _ => 0,
        };
        pool.publish_breaker(t.to, self.breaker.open_until(), probes);
        if let Some(h) = self.half_open_timer.take() {
            ctx.cancel_future(h);
        }
        if let Some(until) = self.breaker.open_until() {
            let wait = until.saturating_duration_since(Instant::now());
            self.half_open_timer = Some(ctx.run_later(wait, |act, ctx| {
                if let Some(t) = act.breaker.poll(Instant::now()) {
                    act.apply(t, ctx);
                }
            }));
        }
        let (total, failed) = self.breaker.window_counts(Instant::now());
        info!(
            service = %self.service,
            from = %t.from,
            to = %t.to,
            reason = %t.reason,
            window = ?self.breaker.config().window,
            requests_in_window = total,
            failures_in_window = failed,
            "circuit breaker state changed"
        );
        self.events.breaker_changed(&self.service, &t);
    }

    /// Moves the successes the request path counted into the breaker's window.
    fn drain_successes(&mut self, now: Instant) {
        if let Some(pool) = self.pool.upgrade() {
            let n = pool.take_successes();
            self.breaker.record_successes(now, n);
        }
    }

    fn schedule_health_checks(&mut self, ctx: &mut Context<Self>) {
        if let Some(h) = self.health_task.take() {
            ctx.cancel_future(h);
        }
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        if let Some(hc) = pool.service().health_check.clone() {
            self.check_all(ctx);
            // Clamped: config bounds the interval (an hour), and actix adds it to
            // the clock unchecked.
            let every = hc.interval.min(MAX_HEALTH_CHECK_WAIT);
            self.health_task = Some(ctx.run_interval(every, |act, ctx| act.check_all(ctx)));
        } else {
            // No checks: every target is back in rotation.
            for t in pool.targets() {
                t.set_health(TargetHealth::Unchecked);
            }
        }
    }

    fn check_all(&mut self, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            // The service is gone from the config: nothing left to watch.
            ctx.stop();
            return;
        };
        let svc = pool.service();
        let Some(hc) = svc.health_check.as_ref() else {
            return;
        };
        for (i, t) in pool.targets().iter().enumerate() {
            let u = &t.upstream;
            let url = format!("{}://{}{}{}", u.scheme, u.authority, u.base_path, hc.path);
            let timeout = hc.timeout.min(MAX_HEALTH_CHECK_WAIT);
            let fut = self.client.get(url).timeout(timeout).send();
            ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
                let ok = matches!(&res, Ok(r) if r.status().is_success());
                act.on_check(i, ok, ctx);
            }));
        }
    }

    fn on_check(&mut self, i: usize, ok: bool, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let (Some(target), Some(hc)) = (pool.targets().get(i), pool.service().health_check.clone())
        else {
            return;
        };
        let Some(streak) = self.streaks.get_mut(i) else {
            return;
        };
        let before = target.health();
        if ok {
            streak.passed += 1;
            streak.failed = 0;
            if before != TargetHealth::Healthy && streak.passed >= hc.healthy_after {
                target.set_health(TargetHealth::Healthy);
                if before == TargetHealth::Unhealthy {
                    info!(service = %self.service, target = %target.upstream.url, passes = streak.passed, "target healthy again: back in rotation");
                    self.events
                        .health_changed(&self.service, &target.upstream.url, true);
                }
            }
            if let Some(t) = self.breaker.health_check_passed() {
                self.apply(t, ctx);
            }
        } else {
            streak.failed += 1;
            streak.passed = 0;
            if before != TargetHealth::Unhealthy && streak.failed >= hc.unhealthy_after {
                target.set_health(TargetHealth::Unhealthy);
                warn!(service = %self.service, target = %target.upstream.url, failures = streak.failed, "target failed its health checks: out of rotation");
                self.events
                    .health_changed(&self.service, &target.upstream.url, false);
            }
        }
    }
}

impl Actor for UpstreamActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        tracing::debug!(service = %self.service, "upstream actor started");
        self.schedule_health_checks(ctx);
        // Batched successes land in the bucket of (about) their own time.
        ctx.run_interval(SUCCESS_DRAIN_INTERVAL, |act, ctx| {
            if act.pool.strong_count() == 0 {
                ctx.stop();
                return;
            }
            act.drain_successes(Instant::now());
        });
    }
}

impl Supervised for UpstreamActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!(service = %self.service, "upstream actor restarting with a closed breaker");
        self.breaker = Breaker::new(self.breaker.config().clone(), Instant::now());
        self.half_open_timer = None;
        self.health_task = None;
        if let Some(pool) = self.pool.upgrade() {
            pool.publish_breaker(BreakerState::Closed, None, 0);
        }
    }
}

impl Handler<Outcome> for UpstreamActor {
    type Result = ();

    fn handle(&mut self, msg: Outcome, ctx: &mut Context<Self>) {
        if !self.breaker.config().enabled {
            return;
        }
        let now = Instant::now();
        self.breaker.record_successes(now, msg.successes_before);
        let breaker = &mut self.breaker;
        match catch_unwind(AssertUnwindSafe(|| breaker.record(now, msg.success))) {
            Ok(Some(t)) => self.apply(t, ctx),
            Ok(None) => {}
            Err(_) => {
                error!(service = %self.service, "upstream actor panicked; restarting it");
                ctx.stop();
            }
        }
    }
}

impl Handler<Reconfigure> for UpstreamActor {
    type Result = ();

    fn handle(&mut self, _: Reconfigure, ctx: &mut Context<Self>) {
        let Some(pool) = self.pool.upgrade() else {
            return;
        };
        let svc = pool.service();
        self.breaker.reconfigure(svc.circuit_breaker.clone());
        if !svc.circuit_breaker.enabled && self.breaker.state() != BreakerState::Closed {
            pool.publish_breaker(BreakerState::Closed, None, 0);
            self.breaker = Breaker::new(svc.circuit_breaker.clone(), Instant::now());
        }
        self.schedule_health_checks(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_config::{CircuitBreakerConfig, LoadBalancing, Service, Upstream};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[derive(Default)]
    struct Counting {
        transitions: AtomicUsize,
    }

    impl UpstreamEvents for Counting {
        fn breaker_changed(&self, _: &str, _: &Transition) {
            self.transitions.fetch_add(1, Ordering::SeqCst);
        }
        fn health_changed(&self, _: &str, _: &str, _: bool) {}
    }

    /// Test-only: make the actor panic inside a handler.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Crash;

    impl Handler<Crash> for UpstreamActor {
        type Result = ();
        fn handle(&mut self, _: Crash, ctx: &mut Context<Self>) {
            if catch_unwind(AssertUnwindSafe(|| panic!("boom"))).is_err() {
                ctx.stop();
            }
        }
    }

    fn pool() -> Arc<UpstreamPool> {
        Arc::new(UpstreamPool::new(Arc::new(Service {
            name: "svc".into(),
            upstreams: vec![Upstream {
                url: "http://127.0.0.1:1".into(),
                scheme: "http".into(),
                authority: "127.0.0.1:1".into(),
                base_path: String::new(),
            }],
            load_balancing: LoadBalancing::RoundRobin,
            timeout: Duration::from_secs(1),
            circuit_breaker: CircuitBreakerConfig {
                consecutive_failures: 2,
                ..Default::default()
            },
            health_check: None,
        })))
    }

    /// Test-only: answered once every message queued before it was handled (the
    /// mailbox is FIFO), so awaiting it is a barrier, not a guess at a duration.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Barrier;

    impl Handler<Barrier> for UpstreamActor {
        type Result = ();
        fn handle(&mut self, _: Barrier, _: &mut Context<Self>) {}
    }

    /// Waits until every outcome queued so far has been handled by the actor.
    async fn handled(handle: &UpstreamHandle) {
        handle
            .addr
            .send(Barrier)
            .await
            .expect("the actor answers (its supervisor restarts it)");
    }

    /// Polls the published breaker state every 5 ms until it is `want`; panics
    /// after 5 s with the last state seen.
    async fn wait_for_state(handle: &UpstreamHandle, want: BreakerState) {
        let end = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let seen = handle.pool.breaker_state();
            if seen == want {
                return;
            }
            assert!(
                std::time::Instant::now() < end,
                "breaker never became {want:?}; last seen {seen:?}"
            );
            actix::clock::sleep(Duration::from_millis(5)).await;
        }
    }

    #[actix::test]
    async fn a_lagging_actor_still_sees_successes_between_failures() {
        let events = Arc::new(Counting::default());
        let handle = UpstreamHandle::start(pool(), events.clone());
        let allowed = crate::upstream::Admission::Allowed;
        // Ten failures, each followed by a success, all queued before the actor
        // runs once: the streak never reaches consecutive_failures (2).
        for _ in 0..10 {
            handle.pool.report(false, allowed);
            handle.pool.report(true, allowed);
        }
        // Nothing to poll for: the breaker must stay closed. Wait until the actor
        // has handled all twenty reports, then look.
        handled(&handle).await;
        assert_eq!(handle.pool.breaker_state(), BreakerState::Closed);
        assert_eq!(events.transitions.load(Ordering::SeqCst), 0);
    }

    #[actix::test]
    async fn outcomes_open_the_published_breaker_and_a_panic_restarts_the_actor() {
        let events = Arc::new(Counting::default());
        let handle = UpstreamHandle::start(pool(), events.clone());
        let allowed = crate::upstream::Admission::Allowed;
        handle.pool.report(false, allowed);
        handle.pool.report(false, allowed);
        wait_for_state(&handle, BreakerState::Open).await;
        handled(&handle).await;
        assert_eq!(events.transitions.load(Ordering::SeqCst), 1);

        // a panic inside a handler: the supervisor restarts the actor closed…
        handle.addr.do_send(Crash);
        wait_for_state(&handle, BreakerState::Closed).await;
        // …and it keeps working
        handle.pool.report(false, allowed);
        handle.pool.report(false, allowed);
        wait_for_state(&handle, BreakerState::Open).await;
    }
}
