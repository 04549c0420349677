//! Cluster-wide rate limits, node side.
//!
//! The request path calls [`ClientLimiters::acquire`], which decides from this
//! node's memory: a [`LocalKey`] per (policy, client key) admits while the node's
//! hits stay within the allowance the replicated ledger granted it plus its floor
//! (see `sluice_raft::limits` for the accounting and the invariant it keeps).
//! Nothing here waits on Raft, disk or another node.
//!
//! The keys live in shard maps owned by the [`ClientLimiter`] actor (under an
//! actix `Supervisor`, started by [`ClientLimiters::start`]): every
//! `sync_interval` it collects the shards' report items and proposes one report,
//! it applies the grants the cluster sends back as deltas, and it evicts idle
//! keys. Not an actor per client: an idle actix actor costs about 1 KB before it
//! holds anything, so an actor per key would put a million keys near 1 GiB, while
//! a map entry costs its key and a few counters. The request path counts in the
//! shard's map under a short per-shard lock (the state the actor publishes); it
//! never sends the actor a message and never awaits.

use actix::prelude::*;
use sluice_raft::limits::{self, Algo, Grant, Item, LocalKey, Report, Terms};
use sluice_raft::{Delta, NodeId};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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

impl Policy {
    fn terms(&self, members: u32) -> Terms {
        Terms {
            members,
            limit: self.limit,
            window_ms: u64::try_from(self.window.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            algo: match self.algorithm {
                Algorithm::SlidingWindow => Algo::SlidingWindow,
                Algorithm::TokenBucket { burst } => Algo::TokenBucket { burst },
            },
        }
    }
}

/// Where a key stands against one policy after a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u64,
    pub remaining: u64,
    /// Until the current window ends.
    pub reset: Duration,
    /// When it ends (Unix ms), by the clock that decided.
    pub reset_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted(Quota),
    Refused { quota: Quota, retry_after: Duration },
}

/// Shards of the key map: enough that the request path rarely meets another
/// thread on a lock, few enough that a report visits them quickly.
const SHARDS: usize = 32;
/// Idle keys are evicted this often.
const EVICT_EVERY: Duration = Duration::from_secs(5);

struct Entry {
    local: LocalKey,
    /// Listed in the shard's `dirty` (checked by the next report).
    dirty: bool,
}

#[derive(Default)]
struct Shard {
    /// Entries boxed: the table then holds a pointer per slot, and its spare
    /// slots (a hash table runs up to half empty) cost 8 bytes, not an entry.
    keys: HashMap<Box<str>, Box<Entry>>,
    /// The terms of each policy the shard's keys belong to (a key's policy is
    /// the name part of its ledger key), kept once rather than in every entry.
    policies: HashMap<Arc<str>, Terms>,
    /// Keys used since the last report: the only ones a report looks at.
    dirty: Vec<Box<str>>,
}

struct Inner {
    node: NodeId,
    /// This process's boot time (Unix ms): its incarnation in the ledger.
    boot_ms: u64,
    /// Floors may be used in windows that began at or after this (Unix ms): the
    /// boot time after a restart (the previous life may have used the floor of
    /// the current window), 0 on a node's first start.
    floor_from_ms: u64,
    hasher: std::collections::hash_map::RandomState,
    /// Cluster members as Raft last said (0: not known yet).
    members: AtomicU32,
    shards: Box<[Mutex<Shard>]>,
}

/// The node's limiter. Cheap to clone (a handle).
#[derive(Clone)]
pub struct ClientLimiters {
    inner: Arc<Inner>,
}

impl Default for ClientLimiters {
    /// A limiter on its own (no cluster, nothing reported): a one-member first
    /// start, which owns every sliding-window limit whole. Nodes use
    /// [`ClientLimiters::new`] / [`ClientLimiters::first_start`].
    fn default() -> ClientLimiters {
        let l = ClientLimiters::first_start(0, 0);
        l.set_members(1);
        l
    }
}

/// The wall clock in Unix ms (windows are aligned to the epoch).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ClientLimiters {
    /// The limiter of node `node`, booted at `boot_ms` (Unix ms; it must grow
    /// from one start of the node to the next).
    pub fn new(node: NodeId, boot_ms: u64) -> ClientLimiters {
        ClientLimiters::with_floor_from(node, boot_ms, boot_ms)
    }

    /// A node's first start (no earlier life could have admitted anything): its
    /// floors count from the start of the current window.
    pub fn first_start(node: NodeId, boot_ms: u64) -> ClientLimiters {
        ClientLimiters::with_floor_from(node, boot_ms, 0)
    }

    fn with_floor_from(node: NodeId, boot_ms: u64, floor_from_ms: u64) -> ClientLimiters {
        ClientLimiters {
            inner: Arc::new(Inner {
                node,
                boot_ms,
                floor_from_ms,
                hasher: Default::default(),
                members: AtomicU32::new(0),
                shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            }),
        }
    }

    /// The cluster's member count, as this node's Raft knows it.
    pub fn set_members(&self, members: usize) {
        let m = u32::try_from(members).unwrap_or(u32::MAX);
        self.inner.members.store(m, Ordering::Relaxed);
    }

    pub fn node(&self) -> NodeId {
        self.inner.node
    }

    pub fn incarnation(&self) -> u64 {
        self.inner.boot_ms
    }

    fn shard_of(&self, key: &str) -> usize {
        (self.inner.hasher.hash_one(key) as usize) % SHARDS
    }

    fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        self.inner.shards[i]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one request for `key` under `policy` if this node's allowance
    /// admits it. Memory only.
    pub fn acquire(&self, policy: &Policy, key: &str) -> Verdict {
        let now = now_ms();
        let terms = policy.terms(self.inner.members.load(Ordering::Relaxed));
        let lkey = limits::ledger_key(&policy.name, key);
        let mut shard = self.lock(self.shard_of(&lkey));
        let shard = &mut *shard;
        match shard.policies.get_mut(&policy.name) {
            Some(t) => *t = terms,
            None => {
                shard.policies.insert(policy.name.clone(), terms);
            }
        }
        let entry = match shard.keys.get_mut(lkey.as_str()) {
            Some(e) => e,
            None => shard.keys.entry(lkey.clone().into()).or_insert_with(|| {
                Box::new(Entry {
                    local: LocalKey::default(),
                    dirty: false,
                })
            }),
        };
        let v = entry.local.admit(&terms, now, self.inner.floor_from_ms);
        if !entry.dirty {
            entry.dirty = true;
            shard.dirty.push(lkey.into());
        }
        let quota = Quota {
            limit: policy.limit,
            remaining: v.remaining,
            reset: Duration::from_millis(v.reset_ms.saturating_sub(now)),
            reset_at_ms: v.reset_ms,
        };
        if v.admitted {
            Verdict::Admitted(quota)
        } else {
            Verdict::Refused {
                quota,
                retry_after: Duration::from_millis(v.retry_after_ms),
            }
        }
    }

    /// Gives back a request `acquire` admitted (another policy refused it).
    pub fn release(&self, policy: &Policy, key: &str) {
        let lkey = limits::ledger_key(&policy.name, key);
        let mut shard = self.lock(self.shard_of(&lkey));
        if let Some(e) = shard.keys.get_mut(lkey.as_str()) {
            e.local.undo();
        }
    }

    /// Keys with state on this node (`gateway_rate_limit_keys`).
    pub fn active_keys(&self) -> usize {
        (0..SHARDS).map(|i| self.lock(i).keys.len()).sum()
    }

    /// The report items of shard `i` at `now`: its dirty keys that need more
    /// allowance or ended a window with unreported hits.
    fn collect_shard(&self, i: usize, now: u64, out: &mut Vec<Item>) {
        let boot = self.inner.floor_from_ms;
        let mut shard = self.lock(i);
        let shard = &mut *shard;
        let dirty = std::mem::take(&mut shard.dirty);
        for key in dirty {
            let Some(e) = shard.keys.get_mut(&key) else {
                continue;
            };
            let Some(terms) = shard.policies.get(limits::split_key(&key).0).copied() else {
                continue;
            };
            if e.local.due(&terms, now, boot) {
                e.local.take_items(&key, &terms, now, boot, out);
            }
            // Checked now; the next request (or a grant) lists it again.
            e.dirty = false;
        }
    }

    /// The report this node should propose now, if any key needs one.
    pub fn collect(&self, now: u64) -> Option<Report> {
        let mut items = Vec::new();
        for i in 0..SHARDS {
            self.collect_shard(i, now, &mut items);
        }
        (!items.is_empty()).then(|| Report {
            node: self.inner.node,
            incarnation: self.inner.boot_ms,
            now_ms: now,
            items,
        })
    }

    /// Applies what the state machine reports: grants to this node's current
    /// incarnation, and admin resets.
    pub fn apply_delta(&self, delta: &Delta) {
        match delta {
            Delta::LimitsGranted(g)
                if g.node == self.inner.node && g.incarnation == self.inner.boot_ms =>
            {
                for grant in &g.grants {
                    self.apply_grant(grant);
                }
            }
            Delta::LimitsReset { keys } => {
                for key in keys {
                    let mut shard = self.lock(self.shard_of(key));
                    if let Some(e) = shard.keys.get_mut(key.as_str()) {
                        e.local.reset();
                    }
                }
            }
            _ => {}
        }
    }

    fn apply_grant(&self, grant: &Grant) {
        let mut shard = self.lock(self.shard_of(&grant.key));
        let shard = &mut *shard;
        if let Some(e) = shard.keys.get_mut(grant.key.as_str()) {
            e.local.apply_grant(grant);
            // Requests refused while the grant was on its way made the key due.
            if !e.dirty && e.local.attempts > 0 {
                e.dirty = true;
                shard.dirty.push(grant.key.clone().into());
            }
        }
    }

    /// Drops keys unused for two windows with nothing left to report.
    pub fn evict_idle(&self, now: u64) -> usize {
        let mut evicted = 0;
        for i in 0..SHARDS {
            let mut shard = self.lock(i);
            let shard = &mut *shard;
            let before = shard.keys.len();
            let policies = &shard.policies;
            // Idle for two windows: its window is over, so a new entry for the
            // key starts in a later one (never reusing this window's floor).
            shard.keys.retain(|k, e| {
                let window = policies
                    .get(limits::split_key(k).0)
                    .map_or(u64::MAX, |t| t.window_ms);
                let idle = now.saturating_sub(e.local.last_seen_ms) > window.saturating_mul(2);
                !(idle && e.local.unreported == 0 && e.local.tail == 0 && !e.dirty)
            });
            evicted += before - shard.keys.len();
        }
        evicted
    }

    /// Starts the shard actors under a supervisor, on the current arbiter. They
    /// propose each report with `propose` (the node's command-level write path)
    /// and never more than one at a time.
    pub fn start<P, F>(&self, sync_interval: Duration, propose: P) -> Addr<ClientLimiter>
    where
        P: Fn(Report) -> F + 'static,
        F: std::future::Future<Output = ()> + 'static,
    {
        let limiters = self.clone();
        let propose: Rc<dyn Fn(Report) -> LocalBoxFuture> = Rc::new(move |r| Box::pin(propose(r)));
        Supervisor::start(move |_| ClientLimiter {
            limiters,
            sync_interval,
            propose,
            in_flight: false,
        })
    }
}

type LocalBoxFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;
use std::rc::Rc;

/// The actor that owns the key shards' reporting and eviction (see the module
/// docs for why one actor holds every shard's schedule rather than one per key).
pub struct ClientLimiter {
    limiters: ClientLimiters,
    sync_interval: Duration,
    propose: Rc<dyn Fn(Report) -> LocalBoxFuture>,
    in_flight: bool,
}

impl Actor for ClientLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(self.sync_interval, |act, ctx| act.report(ctx));
        ctx.run_interval(EVICT_EVERY, |act, _| {
            let n = act.limiters.evict_idle(now_ms());
            if n > 0 {
                tracing::debug!(evicted = n, "idle rate-limit keys evicted");
            }
        });
    }
}

impl Supervised for ClientLimiter {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!("rate limiter restarting");
        self.in_flight = false;
    }
}

/// Done proposing a report.
#[derive(Message)]
#[rtype(result = "()")]
struct Proposed;

impl Handler<Proposed> for ClientLimiter {
    type Result = ();
    fn handle(&mut self, _: Proposed, _: &mut Context<Self>) {
        self.in_flight = false;
    }
}

/// A batch of applied state changes for the limiter.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deltas(pub Arc<Vec<Delta>>);

impl Handler<Deltas> for ClientLimiter {
    type Result = ();
    fn handle(&mut self, msg: Deltas, _: &mut Context<Self>) {
        for d in msg.0.iter() {
            self.limiters.apply_delta(d);
        }
    }
}

impl ClientLimiter {
    fn report(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let Some(report) = self.limiters.collect(now_ms()) else {
            return;
        };
        self.in_flight = true;
        let fut = (self.propose)(report);
        let me = ctx.address();
        actix::spawn(async move {
            fut.await;
            me.do_send(Proposed);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(limit: u64) -> Policy {
        Policy {
            name: "p".into(),
            limit,
            window: Duration::from_secs(3600),
            algorithm: Algorithm::SlidingWindow,
        }
    }

    #[test]
    fn floor_then_report_then_grant() {
        let l = ClientLimiters::new(1, 0);
        let p = policy(1000);
        for _ in 0..10 {
            assert!(matches!(l.acquire(&p, "user:a"), Verdict::Admitted(_)));
        }
        assert!(matches!(l.acquire(&p, "user:a"), Verdict::Refused { .. }));
        let r = l.collect(now_ms()).expect("a report");
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].hits, 10);
        let mut ledger = sluice_raft::limits::Ledger::default();
        let g = ledger.apply(&r, &[1, 2].into());
        l.apply_delta(&Delta::LimitsGranted(g));
        assert!(matches!(l.acquire(&p, "user:a"), Verdict::Admitted(_)));
        assert_eq!(l.active_keys(), 1);
    }

    #[test]
    fn grants_for_another_incarnation_are_ignored() {
        let l = ClientLimiters::new(1, 5);
        let p = policy(1000);
        let _ = l.acquire(&p, "user:a");
        let r = l.collect(now_ms()).expect("a report");
        let mut stale = r.clone();
        stale.incarnation = 4;
        let mut ledger = sluice_raft::limits::Ledger::default();
        let g = ledger.apply(&stale, &[1].into());
        l.apply_delta(&Delta::LimitsGranted(g));
        // The floor (10) was used by the 1st request only; nothing more granted.
        for _ in 0..9 {
            assert!(matches!(l.acquire(&p, "user:a"), Verdict::Admitted(_)));
        }
        assert!(matches!(l.acquire(&p, "user:a"), Verdict::Refused { .. }));
    }
}
