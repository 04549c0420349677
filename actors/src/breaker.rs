//! The circuit-breaker state machine, free of actors and clocks so it can be tested
//! with tokio's paused clock: `closed -> open` by error rate or consecutive
//! failures, `open -> half-open` after `open_for`, `half-open -> closed` after
//! `close_after` successful probes (or a passing health check), `half-open -> open`
//! on any failed probe.
//!
//! Outcomes are counted in a rolling window of [`BUCKETS`] buckets, so old results
//! age out in steps of `window / BUCKETS` without storing each request.

use cluster_config::CircuitBreakerConfig;
use std::fmt;
use std::time::Duration;
use tokio::time::Instant;

/// Stand-in for an `open_for` too long for the clock (validation refuses such).
const MAX_OPEN_FOR: Duration = Duration::from_secs(3600);

/// Buckets per window: the window slides in steps of `window / BUCKETS`.
pub const BUCKETS: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state change and why it happened (logged at info).
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Which bucket-length slot since `origin` this bucket counts; stale when old.
    slot: u64,
    ok: u32,
    failed: u32,
}

#[derive(Debug)]
pub struct Breaker {
    cfg: CircuitBreakerConfig,
    state: BreakerState,
    origin: Instant,
    buckets: [Bucket; BUCKETS as usize],
    consecutive_failures: u32,
    /// When the breaker last opened; `open_for` counts from here.
    opened_at: Option<Instant>,
    half_open_successes: u32,
}

impl Breaker {
    pub fn new(cfg: CircuitBreakerConfig, now: Instant) -> Self {
        Breaker {
            cfg,
            state: BreakerState::Closed,
            origin: now,
            buckets: [Bucket::default(); BUCKETS as usize],
            consecutive_failures: 0,
            opened_at: None,
            half_open_successes: 0,
        }
    }

    pub fn state(&self) -> BreakerState {
        self.state
    }

    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.cfg
    }

    /// New thresholds apply from now on; the current state and counts are kept.
    pub fn reconfigure(&mut self, cfg: CircuitBreakerConfig) {
        if cfg.window != self.cfg.window {
            self.buckets = [Bucket::default(); BUCKETS as usize];
        }
        self.cfg = cfg;
    }

    /// When an open breaker turns half-open.
    pub fn open_until(&self) -> Option<Instant> {
        match self.state {
            // Checked: config bounds `open_for` (at most an hour), but an overflow
            // here would panic the actor, which restarts closed and never opens.
            BreakerState::Open => self.opened_at.map(|t| {
                t.checked_add(self.cfg.open_for)
                    .unwrap_or_else(|| t + MAX_OPEN_FOR)
            }),
            _ => None,
        }
    }

    /// (requests, failures) in the rolling window ending at `now`.
    pub fn window_counts(&self, now: Instant) -> (u64, u64) {
        let current = self.slot(now);
        self.buckets
            .iter()
            .filter(|b| b.slot + BUCKETS > current && b.slot <= current)
            .fold((0, 0), |(t, f), b| {
                (
                    t + u64::from(b.ok) + u64::from(b.failed),
                    f + u64::from(b.failed),
                )
            })
    }

    fn bucket_len(&self) -> Duration {
        (self.cfg.window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    fn slot(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_len().as_nanos())
            as u64
    }

    fn count(&mut self, now: Instant, success: bool) {
        let b = self.bucket(now);
        if success {
            b.ok = b.ok.saturating_add(1);
        } else {
            b.failed = b.failed.saturating_add(1);
        }
    }

    /// The current bucket, emptied first if it last counted an older slot.
    fn bucket(&mut self, now: Instant) -> &mut Bucket {
        let slot = self.slot(now);
        let b = &mut self.buckets[(slot % BUCKETS) as usize];
        if b.slot != slot {
            *b = Bucket {
                slot,
                ok: 0,
                failed: 0,
            };
        }
        b
    }

    /// Records one request's outcome (5xx, timeouts and connect errors are failures).
    pub fn record(&mut self, now: Instant, success: bool) -> Option<Transition> {
        match self.state {
            BreakerState::Closed => {
                self.count(now, success);
                if success {
                    self.consecutive_failures = 0;
                    return None;
                }
                self.consecutive_failures += 1;
                if self.consecutive_failures >= self.cfg.consecutive_failures {
                    let reason = format!("{} consecutive failures", self.consecutive_failures);
                    return Some(self.open(now, reason));
                }
                let (total, failed) = self.window_counts(now);
                let rate = failed as f64 / total.max(1) as f64;
                if total >= u64::from(self.cfg.min_requests) && rate >= self.cfg.error_rate {
                    let reason = format!(
                        "error rate {:.0}% ({failed} of {total} requests) over {:?} reached {:.0}%",
                        rate * 100.0,
                        self.cfg.window,
                        self.cfg.error_rate * 100.0
                    );
                    return Some(self.open(now, reason));
                }
                None
            }
            BreakerState::HalfOpen if success => {
                self.half_open_successes += 1;
                (self.half_open_successes >= self.cfg.close_after).then(|| {
                    let reason = format!("{} probe requests succeeded", self.half_open_successes);
                    self.close(reason)
                })
            }
            BreakerState::HalfOpen => Some(self.open(now, "a probe request failed".to_owned())),
            // Late outcomes of requests admitted before the breaker opened.
            BreakerState::Open => None,
        }
    }

    /// Records `n` ordinary successes at once (batched by the request path).
    pub fn record_successes(&mut self, now: Instant, n: u32) {
        if n == 0 || self.state != BreakerState::Closed {
            return;
        }
        let b = self.bucket(now);
        b.ok = b.ok.saturating_add(n);
        self.consecutive_failures = 0;
    }

    /// Moves an open breaker to half-open once `open_for` has passed.
    pub fn poll(&mut self, now: Instant) -> Option<Transition> {
        let until = self.open_until()?;
        if now < until {
            return None;
        }
        self.half_open_successes = 0;
        Some(self.set(
            BreakerState::HalfOpen,
            format!("open for {:?}; admitting probe requests", self.cfg.open_for),
        ))
    }

    /// A passing active health check closes a half-open breaker.
    pub fn health_check_passed(&mut self) -> Option<Transition> {
        (self.state == BreakerState::HalfOpen)
            .then(|| self.close("an active health check passed".to_owned()))
    }

    fn open(&mut self, now: Instant, reason: String) -> Transition {
        self.opened_at = Some(now);
        self.consecutive_failures = 0;
        self.set(BreakerState::Open, reason)
    }

    fn close(&mut self, reason: String) -> Transition {
        // A fresh window: the failures that opened the breaker must not re-open it.
        self.buckets = [Bucket::default(); BUCKETS as usize];
        self.consecutive_failures = 0;
        self.opened_at = None;
        self.set(BreakerState::Closed, reason)
    }

    fn set(&mut self, to: BreakerState, reason: String) -> Transition {
        let from = std::mem::replace(&mut self.state, to);
        Transition { from, to, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::advance;

    /// The defaults: error_rate 0.5 over 60 s with min_requests 20,
    /// consecutive_failures 5, open_for 30 s, close_after 2.
    fn cfg() -> CircuitBreakerConfig {
        CircuitBreakerConfig::default()
    }

    #[tokio::test(start_paused = true)]
    async fn opens_on_consecutive_failures() {
        let mut b = Breaker::new(cfg(), Instant::now());
        for _ in 0..4 {
            assert_eq!(b.record(Instant::now(), false), None);
        }
        let t = b.record(Instant::now(), false).expect("opens");
        assert_eq!((t.from, t.to), (BreakerState::Closed, BreakerState::Open));
        assert!(t.reason.contains("5 consecutive failures"), "{}", t.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_resets_the_consecutive_count() {
        let mut c = cfg();
        c.min_requests = 1_000_000; // rate rule out of the way
        let mut b = Breaker::new(c, Instant::now());
        for _ in 0..10 {
            for _ in 0..4 {
                assert_eq!(b.record(Instant::now(), false), None);
            }
            assert_eq!(b.record(Instant::now(), true), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_by_error_rate_only_with_enough_requests() {
        let mut c = cfg();
        c.consecutive_failures = 1000;
        let mut b = Breaker::new(c, Instant::now());
        // 9 failures out of 18: rate 0.5 but under min_requests
        for _ in 0..9 {
            assert_eq!(b.record(Instant::now(), true), None);
            assert_eq!(b.record(Instant::now(), false), None);
        }
        assert_eq!(b.record(Instant::now(), true), None); // 19 requests, 9 failed
        let t = b
            .record(Instant::now(), false)
            .expect("20 requests, 10 failed: opens");
        assert_eq!(t.to, BreakerState::Open);
        assert!(t.reason.contains("10 of 20"), "{}", t.reason);
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_age_out_of_the_window() {
        let mut c = cfg();
        c.consecutive_failures = 1000;
        let mut b = Breaker::new(c, Instant::now());
        for _ in 0..15 {
            b.record(Instant::now(), false);
        }
        advance(Duration::from_secs(61)).await;
        assert_eq!(b.window_counts(Instant::now()), (0, 0));
        for _ in 0..15 {
            b.record(Instant::now(), true);
        }
        // 5 new failures + 15 successes = 25% over the window: stays closed
        for _ in 0..5 {
            assert_eq!(b.record(Instant::now(), false), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn open_then_half_open_then_closed() {
        let mut b = Breaker::new(cfg(), Instant::now());
        for _ in 0..5 {
            b.record(Instant::now(), false);
        }
        assert_eq!(b.state(), BreakerState::Open);
        advance(Duration::from_secs(29)).await;
        assert_eq!(b.poll(Instant::now()), None, "still open before open_for");
        advance(Duration::from_secs(1)).await;
        let t = b.poll(Instant::now()).expect("half-open after open_for");
        assert_eq!((t.from, t.to), (BreakerState::Open, BreakerState::HalfOpen));
        assert_eq!(
            b.record(Instant::now(), true),
            None,
            "one probe is not enough"
        );
        let t = b
            .record(Instant::now(), true)
            .expect("closes after close_after");
        assert_eq!(
            (t.from, t.to),
            (BreakerState::HalfOpen, BreakerState::Closed)
        );
        // the failures that opened it are forgotten
        assert_eq!(b.window_counts(Instant::now()), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn half_open_failure_reopens_for_another_period() {
        let mut b = Breaker::new(cfg(), Instant::now());
        for _ in 0..5 {
            b.record(Instant::now(), false);
        }
        advance(Duration::from_secs(30)).await;
        b.poll(Instant::now()).expect("half-open");
        let t = b.record(Instant::now(), false).expect("reopens");
        assert_eq!((t.from, t.to), (BreakerState::HalfOpen, BreakerState::Open));
        assert_eq!(
            b.open_until(),
            Some(Instant::now() + Duration::from_secs(30))
        );
        advance(Duration::from_secs(10)).await;
        assert_eq!(b.poll(Instant::now()), None);
    }

    #[tokio::test(start_paused = true)]
    async fn health_check_closes_a_half_open_breaker_only() {
        let mut b = Breaker::new(cfg(), Instant::now());
        assert_eq!(b.health_check_passed(), None);
        for _ in 0..5 {
            b.record(Instant::now(), false);
        }
        assert_eq!(b.health_check_passed(), None, "open stays open");
        advance(Duration::from_secs(30)).await;
        b.poll(Instant::now());
        let t = b.health_check_passed().expect("closes");
        assert_eq!(t.to, BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn batched_successes_count_toward_the_rate_and_break_streaks() {
        let mut b = Breaker::new(cfg(), Instant::now());
        for _ in 0..4 {
            b.record(Instant::now(), false);
        }
        b.record_successes(Instant::now(), 30);
        assert_eq!(b.window_counts(Instant::now()), (34, 4));
        for _ in 0..4 {
            assert_eq!(b.record(Instant::now(), false), None, "streak was reset");
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn late_results_while_open_are_ignored() {
        let mut b = Breaker::new(cfg(), Instant::now());
        for _ in 0..5 {
            b.record(Instant::now(), false);
        }
        for _ in 0..10 {
            assert_eq!(b.record(Instant::now(), true), None);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }
}
