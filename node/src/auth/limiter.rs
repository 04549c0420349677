//! Failed client authentications at the token endpoint, per client address, over
//! a sliding window (the times of the last `count` attempts are kept, so "20 per
//! minute" is exact, also across a minute boundary; that is a few entries per key).
//!
//! This counts on this node only, on purpose: it slows down guessing of client
//! secrets, which needs no cluster agreement, and it must keep working when the
//! node is cut off. (The token endpoint's per-client request limit is a cluster
//! rate-limit policy instead: see `crate::limits::token_endpoint_policy`.) Nothing
//! here waits on anything but a short local lock.

use cluster_config::Quota;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before those with no recent attempt are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LocalLimiter {
    /// key -> times of its most recent attempts (at most the quota's count).
    attempts: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// Drops attempts older than the window; `Some(wait)` if `count` remain.
fn full(times: &mut VecDeque<Instant>, quota: Quota, now: Instant) -> Option<Duration> {
    while times
        .front()
        .is_some_and(|t| now.duration_since(*t) >= quota.per)
    {
        times.pop_front();
    }
    let count = usize::try_from(quota.count).unwrap_or(usize::MAX);
    if times.len() >= count {
        let oldest = times.front().copied().unwrap_or(now);
        Some(quota.per.saturating_sub(now.duration_since(oldest)))
    } else {
        None
    }
}

impl LocalLimiter {
    /// Counts one attempt for `key` if it fits `quota`; `Err` says when the oldest
    /// counted attempt leaves the window.
    pub fn admit(&self, key: &str, quota: Quota) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut attempts) = self.attempts.lock() else {
            return Ok(());
        };
        if attempts.len() > SWEEP_ABOVE {
            attempts.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < quota.per));
        }
        let times = attempts.entry(key.to_owned()).or_default();
        if let Some(wait) = full(times, quota, now) {
            return Err(wait);
        }
        times.push_back(now);
        Ok(())
    }

    /// Whether `key` is already over `quota`, without counting an attempt.
    pub fn exhausted(&self, key: &str, quota: Quota) -> Option<Duration> {
        let now = Instant::now();
        let mut attempts = self.attempts.lock().ok()?;
        attempts.get_mut(key).and_then(|t| full(t, quota, now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_quota_then_says_when_to_return() {
        let l = LocalLimiter::default();
        let q = Quota {
            count: 3,
            per: Duration::from_secs(3600),
        };
        for _ in 0..3 {
            assert!(l.admit("c1", q).is_ok());
        }
        let wait = l.admit("c1", q).expect_err("4th refused");
        assert!(wait <= Duration::from_secs(3600));
        assert!(l.exhausted("c1", q).is_some());
        assert!(l.admit("c2", q).is_ok(), "keys are counted apart");
        assert!(l.exhausted("c2", q).is_none());
    }
}
