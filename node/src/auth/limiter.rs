//! Attempt limits for the token endpoint: requests per client and failed client
//! authentications per source IP, in fixed windows aligned to the epoch.
//!
//! These count on this node only; [`AttemptLimiter`] is the seam where the
//! cluster-wide limiter (its own issue) takes over, so the token endpoint does not
//! change when it does. Nothing here waits on anything but a short local lock.

use cluster_config::Quota;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Decides whether one more attempt for `key` fits `quota`; `Err` says when the
/// current window ends.
pub trait AttemptLimiter: Send + Sync {
    fn admit(&self, key: &str, quota: Quota) -> Result<(), Duration>;
    /// Whether `key` is already over `quota`, without counting an attempt.
    fn exhausted(&self, key: &str, quota: Quota) -> Option<Duration>;
}

/// Keys kept before windows that have ended are swept.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Default)]
pub struct LocalLimiter {
    /// key -> (window index, attempts in it)
    windows: Mutex<HashMap<String, (u64, u64)>>,
}

fn window(quota: Quota) -> (u64, Duration) {
    let per = quota.per.as_millis().max(1) as u64;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64;
    let index = now / per;
    let left = Duration::from_millis((index + 1) * per - now);
    (index, left)
}

impl AttemptLimiter for LocalLimiter {
    fn admit(&self, key: &str, quota: Quota) -> Result<(), Duration> {
        let (index, left) = window(quota);
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        if windows.len() > SWEEP_ABOVE {
            windows.retain(|_, (i, _)| *i == index);
        }
        let slot = windows.entry(key.to_owned()).or_insert((index, 0));
        if slot.0 != index {
            *slot = (index, 0);
        }
        if slot.1 >= quota.count {
            return Err(left);
        }
        slot.1 += 1;
        Ok(())
    }

    fn exhausted(&self, key: &str, quota: Quota) -> Option<Duration> {
        let (index, left) = window(quota);
        let windows = self.windows.lock().ok()?;
        match windows.get(key) {
            Some(&(i, n)) if i == index && n >= quota.count => Some(left),
            _ => None,
        }
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
