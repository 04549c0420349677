//! Cluster-wide rate limits, node side: the [`ClientLimiters`] the request path asks
//! (from memory, never awaiting anything).
//!
//! API first: this build admits against this node's own windows only; the cluster
//! accounting (allowances granted through Raft reports) replaces the internals
//! without changing the calls below.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How a policy counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Fixed windows aligned to the epoch; the estimate is the previous window's
    /// count weighted by its overlap plus the current window's count.
    SlidingWindow,
    /// `burst` tokens, refilled at `limit` per `window`.
    TokenBucket { burst: u64 },
}

/// One compiled `rate_limits` entry, as the limiter needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Identifies the policy's counts (and names it in `RateLimit-Policy`).
    pub name: Arc<str>,
    pub limit: u64,
    pub window: Duration,
    pub algorithm: Algorithm,
}

/// Where a key stands against one policy after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the current window ends (token bucket: until the bucket is full again).
    pub reset: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted(Quota),
    Refused { quota: Quota, retry_after: Duration },
}

/// The node's limiter. Cheap to clone (a handle).
#[derive(Clone, Default)]
pub struct ClientLimiters {
    inner: Arc<Mutex<HashMap<(Arc<str>, String), Local>>>,
}

#[derive(Default)]
struct Local {
    window: u64,
    current: u64,
    previous: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl ClientLimiters {
    /// Counts one request for `key` under `policy` if the policy admits it.
    pub fn acquire(&self, policy: &Policy, key: &str) -> Verdict {
        let now = now_ms();
        let w = (policy.window.as_millis() as u64).max(1);
        let idx = now / w;
        let reset = Duration::from_millis((idx + 1) * w - now);
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = map
            .entry((policy.name.clone(), key.to_owned()))
            .or_default();
        if e.window != idx {
            e.previous = if e.window + 1 == idx { e.current } else { 0 };
            e.current = 0;
            e.window = idx;
        }
        let overlap = 1.0 - (now % w) as f64 / w as f64;
        let estimate = (e.previous as f64 * overlap) as u64 + e.current;
        if estimate >= policy.limit {
            let quota = Quota {
                limit: policy.limit,
                remaining: 0,
                reset,
            };
            return Verdict::Refused {
                quota,
                retry_after: reset,
            };
        }
        e.current += 1;
        Verdict::Admitted(Quota {
            limit: policy.limit,
            remaining: policy.limit - estimate - 1,
            reset,
        })
    }

    /// Gives back a request `acquire` admitted (another policy refused it).
    pub fn release(&self, policy: &Policy, key: &str) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = map.get_mut(&(policy.name.clone(), key.to_owned())) {
            e.current = e.current.saturating_sub(1);
        }
    }

    /// Keys with state on this node (`gateway_rate_limit_keys`).
    pub fn active_keys(&self) -> usize {
        self.inner.lock().map_or(0, |m| m.len())
    }
}
