//! Cluster-wide rate-limit accounting: a pure module (no I/O, no clock, no
//! randomness) shared by the state machine, which applies [`Report`]s to the
//! replicated [`Ledger`], and by each node, whose [`LocalKey`]s decide requests
//! from memory.
//!
//! # How a request is decided without a round-trip
//!
//! Each node counts, per key and fixed window (aligned to the epoch, by its own
//! clock), the requests it admitted (`admitted`). It admits while
//! `admitted < granted + floor`:
//!
//! - `granted` is this node's *allowance* for the window: the sum of the grants
//!   the replicated ledger gave it, learnt from the applied log (a [`Grant`]).
//!   Grants only grow, and a node only ever learns a value the ledger holds, so
//!   its local view never exceeds the replicated one.
//! - `floor` ([`Terms::floor`], 1 % of the limit, rounded down) is reserved for
//!   every member in every window, so a node with no quorum (or before its first
//!   grant arrives) can still admit a little; nobody else is ever granted it.
//!
//! Every `sync_interval` a node proposes one [`Report`] with, for the keys that
//! need it, the hits admitted since its last report and how many more it would
//! like (`want`). Applying a report (the same on every node) grants the reporter
//! `min(want, its demand share of what is free)`, where *free* is the window's
//! cap minus every member's reserved floor, minus every grant already made in the
//! window. Hence, per key and fixed window:
//!
//! ```text
//! Σ over nodes and their incarnations of admitted  ≤  Σ floors + Σ grants  ≤  cap  ≤  limit
//! ```
//!
//! with no rounding term: the floor is rounded down and grants are whole units.
//!
//! # Leases, restarts and partitions
//!
//! A grant is a lease on one window: its holder uses it only while its own clock
//! is in that window, and the ledger never grants for a window that has ended by
//! the latest clock it has seen (`Ledger::clock_ms`), nor re-creates a window it
//! has dropped (dropping waits for the window after it to end, plus
//! [`DRIFT_MARGIN_MS`]). A node cut off from the others keeps what it was
//! granted and its floor, and nothing more: it cannot refill, and it never fails
//! open. The others keep using what is free, and from the next window on the
//! whole limit less the cut-off node's floor.
//!
//! A node restarts as a new *incarnation* (its boot time). The ledger keys grants
//! by incarnation; when a new one reports, the old one's grants stay counted as
//! spent (`stranded`): the hits it admitted and never reported died with it. A
//! new incarnation may use its floor only in windows that began after it booted
//! (the previous incarnation may have used the floor of the current one).
//!
//! # Algorithms
//!
//! - `sliding_window`: the cap of window `w` at time `t` is
//!   `limit − ⌊count(w−1) × overlap(t)⌋`, the weighted two-window estimate, where
//!   `count(w−1)` is what was reported for the previous window. The cap only
//!   grows during a window, so earlier grants stay within it. (Hits of `w−1`
//!   still unreported when a grant is made, and floors, are not weighed: the
//!   sliding estimate is approximate by that much; the per-fixed-window bound
//!   above is exact.)
//! - `token_bucket`: a cluster-wide bucket of `burst` tokens refilled at
//!   `(limit − members × floor)` per window; grants take tokens out of it and
//!   last one window (unused tokens are lost, never handed out twice). Per fixed
//!   window: `Σ admitted ≤ burst + limit`.
//!
//! # Asking ahead
//!
//! A node starts each window with only its floor until its first grant for it
//! arrives (a report's round trip). So that a busy key does not meet that gap
//! at every window start, a node whose key is busy asks, within
//! [`LOOKAHEAD_MS`] of the window's end, for the next window too; the ledger
//! grants it from what the next window is sure to have free (its limit less
//! everything the current window may still admit) and hands those grants over
//! as the window begins.
//!
//! # Raft traffic
//!
//! A key is reported only when its node needs more allowance (headroom below
//! half of what it wants for the next [`LOOKAHEAD_MS`]) or when its window ended
//! with hits not yet reported. Wants are at least a tenth of the limit, so a key
//! far from its limit costs about one report item per tenth of its limit.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Node ids, as in the Raft group.
pub type NodeId = u64;

/// How long past a window's successor the ledger keeps it, for clock drift
/// between nodes: a node whose clock lags by less than this never sees its
/// window re-created.
pub const DRIFT_MARGIN_MS: u64 = 5_000;
/// A node's `want` counts in the others' demand shares this long after its report.
pub const DEMAND_FRESH_MS: u64 = 2_000;
/// A node asks for what it expects to admit over this much time.
pub const LOOKAHEAD_MS: u64 = 1_000;

/// Separator of a policy name and a scoped key in a ledger key (not allowed in
/// policy names, and not in header values or URLs unescaped).
const SEP: char = '\u{1f}';

/// The ledger key of `scoped` (e.g. `user:alice`) under policy `policy`.
pub fn ledger_key(policy: &str, scoped: &str) -> String {
    let mut k = String::with_capacity(policy.len() + 1 + scoped.len());
    k.push_str(policy);
    k.push(SEP);
    k.push_str(scoped);
    k
}

/// The policy name and the scoped key of a ledger key.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once(SEP).unwrap_or((key, ""))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algo {
    SlidingWindow,
    TokenBucket { burst: u64 },
}

/// A policy's numbers, as the reporting node knows them (carried in each report
/// item, so apply never depends on how a node compiled the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Terms {
    pub limit: u64,
    pub window_ms: u64,
    pub algo: Algo,
    /// Members of the cluster as the deciding side knows them (the node: its
    /// Raft membership; the ledger: the membership the entry was applied under).
    /// Not carried in reports. 1 makes the floor the whole limit.
    #[serde(skip)]
    pub members: u32,
}

impl Terms {
    /// What every member may admit per window without any grant: 1 % of the
    /// limit, rounded down; 1 for limits from 10 to 99 (so a client's first
    /// request is not refused while its node waits for a grant); 0 below 10.
    /// Exact as long as members × floor ≤ limit: always for limits ≥ 100, and
    /// for up to 10 members below that.
    ///
    /// A cluster of one member reserves it the whole sliding-window limit: no
    /// other node can take any of it, so that is exact and needs no grant.
    pub fn floor(&self) -> u64 {
        if self.members == 1 && self.algo == Algo::SlidingWindow {
            return self.limit;
        }
        match self.limit {
            0..=9 => 0,
            10..=99 => 1,
            l => l / 100,
        }
    }

    fn window_ms(&self) -> u64 {
        self.window_ms.max(1)
    }

    /// The fixed window `now_ms` falls in.
    pub fn window_of(&self, now_ms: u64) -> u64 {
        now_ms / self.window_ms()
    }

    pub fn window_start(&self, window: u64) -> u64 {
        window.saturating_mul(self.window_ms())
    }

    pub fn window_end(&self, window: u64) -> u64 {
        self.window_start(window.saturating_add(1))
    }

    /// The most one node can hold in a window: the limit, or a bucket's burst.
    fn capacity(&self) -> u64 {
        match self.algo {
            Algo::SlidingWindow => self.limit,
            Algo::TokenBucket { burst } => burst,
        }
        .max(1)
    }

    /// The smallest amount worth asking for: a tenth of the capacity, at least 10
    /// (or all of it when smaller), so a burst of a few requests fits in one
    /// grant and keys far from their limit report seldom.
    fn min_want(&self) -> u64 {
        let cap = self.capacity();
        (cap / 10).max(cap.min(10))
    }
}

/// One key in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// [`ledger_key`] of the policy and the scoped key.
    pub key: String,
    pub terms: Terms,
    /// The fixed window the hits were admitted in (by the reporter's clock).
    pub window: u64,
    /// Hits admitted in `window` since the previous report.
    pub hits: u64,
    /// More allowance wanted for `window` (0: none).
    pub want: u64,
}

/// What one node proposes every `sync_interval`: a node-originated command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub node: NodeId,
    /// The reporter's boot time (Unix ms): a restart is a new incarnation.
    pub incarnation: u64,
    /// The reporter's clock when it proposed (Unix ms).
    pub now_ms: u64,
    pub items: Vec<Item>,
}

/// The reporter's allowance after a report was applied, for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: String,
    pub window: u64,
    /// Total granted to (node, incarnation) in `window`.
    pub granted: u64,
    /// What the cluster has left in `window` as the ledger sees it (reported
    /// hits, not what nodes admitted since): for the `RateLimit` headers.
    pub remaining: u64,
}

/// The grants one applied report produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub node: NodeId,
    pub incarnation: u64,
    pub grants: Vec<Grant>,
}

/// One node's standing in a key's current window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub node: NodeId,
    pub incarnation: u64,
    pub granted: u64,
    pub reported: u64,
    /// Its latest `want`, and when (ledger clock) it said so.
    pub want: u64,
    pub want_at_ms: u64,
}

impl Share {
    /// The reporter's share before anything was granted or reported.
    fn fresh(report: &Report, now: u64) -> Share {
        Share {
            node: report.node,
            incarnation: report.incarnation,
            granted: 0,
            reported: 0,
            want: 0,
            want_at_ms: now,
        }
    }
}

/// One key: its current window, and its bucket for token buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLedger {
    pub terms: Terms,
    pub window: u64,
    pub shares: Vec<Share>,
    /// Grants of incarnations that restarted: spent, whatever they admitted.
    pub stranded: u64,
    /// Hits reported for `window`.
    pub count: u64,
    /// Hits reported for `window − 1` (the sliding estimate's previous window).
    pub previous: u64,
    /// Token bucket level in thousandths of a token, as of `bucket_at_ms`.
    pub bucket_milli: u64,
    pub bucket_at_ms: u64,
    /// Grants already made for `window + 1` (asked for ahead, so a busy key does
    /// not start each window on its floor). Boxed: most keys never have any.
    pub upcoming: Option<Box<Upcoming>>,
}

/// A key's grants for the window after its current one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upcoming {
    pub shares: Vec<Share>,
    /// Grants of incarnations that restarted since.
    pub stranded: u64,
}

impl KeyLedger {
    fn new(terms: Terms, window: u64, now_ms: u64) -> KeyLedger {
        let bucket_milli = match terms.algo {
            Algo::TokenBucket { burst } => burst.saturating_mul(1000),
            Algo::SlidingWindow => 0,
        };
        KeyLedger {
            terms,
            window,
            shares: Vec::new(),
            stranded: 0,
            count: 0,
            previous: 0,
            bucket_milli,
            bucket_at_ms: now_ms,
            upcoming: None,
        }
    }

    /// Moves to `window` (later than the current one).
    fn roll(&mut self, window: u64) {
        self.previous = if window == self.window + 1 {
            self.count
        } else {
            0
        };
        let upcoming = self.upcoming.take().filter(|_| window == self.window + 1);
        let upcoming = upcoming.map(|u| *u).unwrap_or_default();
        self.shares = upcoming.shares;
        self.stranded = upcoming.stranded;
        self.window = window;
        self.count = 0;
    }

    fn granted_total(&self) -> u64 {
        self.shares
            .iter()
            .map(|s| s.granted)
            .fold(self.stranded, u64::saturating_add)
    }

    /// Floors reserved in this window: one per member or share holder.
    fn reserved(&self, members: &BTreeSet<NodeId>) -> u64 {
        let extra = self
            .shares
            .iter()
            .filter(|s| !members.contains(&s.node))
            .count() as u64;
        let nodes = (members.len() as u64 + extra).max(1);
        self.terms.floor().saturating_mul(nodes)
    }

    /// The sliding-window cap at `now_ms`.
    fn sliding_cap(&self, now_ms: u64) -> u64 {
        let start = self.terms.window_start(self.window);
        let w = self.terms.window_ms();
        let elapsed = now_ms.saturating_sub(start).min(w);
        let weighted = (u128::from(self.previous) * u128::from(w - elapsed) / u128::from(w)) as u64;
        self.terms.limit.saturating_sub(weighted)
    }

    /// Refills the bucket up to `now_ms` (never backwards).
    fn refill(&mut self, members: &BTreeSet<NodeId>, now_ms: u64) {
        let Algo::TokenBucket { burst } = self.terms.algo else {
            return;
        };
        if now_ms <= self.bucket_at_ms {
            return;
        }
        let rate = self.terms.limit.saturating_sub(self.reserved(members));
        let add = u128::from(now_ms - self.bucket_at_ms) * u128::from(rate) * 1000
            / u128::from(self.terms.window_ms());
        let cap = u128::from(burst) * 1000;
        self.bucket_milli = (u128::from(self.bucket_milli) + add).min(cap) as u64;
        self.bucket_at_ms = now_ms;
    }

    /// What may still be granted in the current window.
    fn free(&self, members: &BTreeSet<NodeId>, now_ms: u64) -> u64 {
        match self.terms.algo {
            Algo::SlidingWindow => self
                .sliding_cap(now_ms)
                .saturating_sub(self.reserved(members))
                .saturating_sub(self.granted_total()),
            Algo::TokenBucket { .. } => self.bucket_milli / 1000,
        }
    }

    /// What may be granted now for the next window. Its sliding cap at its start
    /// is `limit − count(window)`, and `count(window)` can reach everything the
    /// current window's holders may admit (floors and grants): that bound is used.
    fn free_upcoming(&self, members: &BTreeSet<NodeId>) -> u64 {
        match self.terms.algo {
            Algo::SlidingWindow => {
                let upcoming = self.upcoming.as_ref().map_or(0, |u| {
                    u.shares
                        .iter()
                        .map(|s| s.granted)
                        .fold(u.stranded, u64::saturating_add)
                });
                self.terms
                    .limit
                    .saturating_sub(self.reserved(members))
                    .saturating_sub(self.reserved(members))
                    .saturating_sub(self.granted_total())
                    .saturating_sub(upcoming)
            }
            Algo::TokenBucket { .. } => self.bucket_milli / 1000,
        }
    }

    /// What is left of the window for everybody, as far as reports tell.
    fn remaining(&self, now_ms: u64) -> u64 {
        match self.terms.algo {
            Algo::SlidingWindow => self.sliding_cap(now_ms).saturating_sub(self.count),
            Algo::TokenBucket { .. } => self.bucket_milli / 1000,
        }
    }

    /// When the ledger may drop this key (ledger clock): nothing it holds can
    /// matter once its window and the next are over, with margin, and a bucket
    /// would be full again.
    fn expires_at(&self) -> u64 {
        let mut until = self
            .terms
            .window_end(self.window + 1)
            .saturating_add(DRIFT_MARGIN_MS);
        if let Algo::TokenBucket { burst } = self.terms.algo {
            let rate = self.terms.limit.max(1);
            let to_full = u128::from(burst) * u128::from(self.terms.window_ms()) / u128::from(rate);
            let full = self
                .terms
                .window_end(self.window)
                .saturating_add(u64::try_from(to_full).unwrap_or(u64::MAX))
                .saturating_add(DRIFT_MARGIN_MS);
            until = until.max(full);
        }
        until
    }
}

/// The replicated rate-limit state: every key with a current window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// (Boxed: a B-tree node then holds pointers, and its spare slots cost 8
    /// bytes rather than a ledger.)
    pub keys: BTreeMap<String, Box<KeyLedger>>,
    /// The latest proposer clock seen (Unix ms): never goes back, so "this window
    /// has ended" never becomes false again.
    pub clock_ms: u64,
    /// Where the next sweep for expired keys starts (not replicated: whether an
    /// expired key is still held or already dropped makes no difference to any
    /// later apply, since an expired key behaves exactly as a new one).
    #[serde(skip)]
    sweep_from: Option<String>,
}

/// Keys examined for expiry per applied report, besides a few per item: the
/// sweep keeps up with the keys reports create.
const SWEEP_BASE: usize = 64;
const SWEEP_PER_ITEM: usize = 4;

impl Ledger {
    /// Applies one report; `members` are the cluster's members (voters and
    /// learners) as of this log entry.
    pub fn apply(&mut self, report: &Report, members: &BTreeSet<NodeId>) -> Granted {
        self.clock_ms = self.clock_ms.max(report.now_ms);
        let now = self.clock_ms;
        let mut grants = Vec::new();
        for item in &report.items {
            if let Some(g) = self.apply_item(report, item, members, now) {
                grants.push(g);
            }
        }
        self.purge(now, SWEEP_BASE + SWEEP_PER_ITEM * report.items.len());
        Granted {
            node: report.node,
            incarnation: report.incarnation,
            grants,
        }
    }

    fn apply_item(
        &mut self,
        report: &Report,
        item: &Item,
        members: &BTreeSet<NodeId>,
        now: u64,
    ) -> Option<Grant> {
        if item.terms.limit == 0 || item.terms.window_ms == 0 {
            return None;
        }
        // A window that ended (by the latest clock) gets no grant, and one the
        // ledger no longer holds is never re-created.
        let open = item.terms.window_end(item.window) > now;
        let ledger = match self.keys.get_mut(&item.key) {
            Some(l) => l,
            None if open => {
                let terms = Terms {
                    members: u32::try_from(members.len()).unwrap_or(u32::MAX),
                    ..item.terms
                };
                let l = KeyLedger::new(terms, item.window, now);
                self.keys.entry(item.key.clone()).or_insert(Box::new(l))
            }
            None => return None,
        };
        ledger.terms = Terms {
            members: u32::try_from(members.len()).unwrap_or(u32::MAX),
            ..item.terms
        };
        if item.window + 1 == ledger.window {
            // Late hits of the previous window: they weigh on the sliding estimate.
            ledger.previous = ledger.previous.saturating_add(item.hits);
            return None;
        }
        if item.window < ledger.window {
            return None;
        }
        // Asked ahead for the next window, before it began by any clock seen.
        let ahead = item.window == ledger.window + 1
            && now < item.terms.window_start(item.window)
            && item.hits == 0;
        if item.window > ledger.window && !ahead {
            if !open {
                return None;
            }
            ledger.roll(item.window);
        }
        ledger.refill(members, now);
        let free = if !open {
            0
        } else if ahead {
            ledger.free_upcoming(members)
        } else {
            ledger.free(members, now)
        };
        if !ahead {
            ledger.count = ledger.count.saturating_add(item.hits);
        }
        let (shares, stranded) = if ahead {
            let u = ledger.upcoming.get_or_insert_with(Box::default);
            (&mut u.shares, &mut u.stranded)
        } else {
            (&mut ledger.shares, &mut ledger.stranded)
        };
        let (granted, added) = grant(shares, stranded, report, item, now, free)?;
        if let Algo::TokenBucket { .. } = ledger.terms.algo {
            ledger.bucket_milli = ledger
                .bucket_milli
                .saturating_sub(added.saturating_mul(1000));
        }
        Some(Grant {
            key: item.key.clone(),
            window: item.window,
            granted,
            remaining: if ahead {
                free.saturating_sub(added)
            } else {
                ledger.remaining(now)
            },
        })
    }

    /// Drops keys whose windows are over for good, a slice of the key space per
    /// call (a sweep that wraps around).
    fn purge(&mut self, now: u64, budget: usize) {
        use std::ops::Bound;
        let mut expired = Vec::new();
        let mut seen = 0;
        // From the cursor to the end, then (if budget is left) from the start.
        for pass in 0..2 {
            let start = match (&self.sweep_from, pass) {
                (Some(k), 0) => Bound::Excluded(k.clone()),
                _ => Bound::Unbounded,
            };
            let mut last = None;
            for (k, l) in self
                .keys
                .range::<String, _>((start, Bound::Unbounded))
                .take(budget - seen)
            {
                if l.expires_at() <= now {
                    expired.push(k.clone());
                }
                last = Some(k);
                seen += 1;
            }
            self.sweep_from = last.cloned();
            if seen >= budget || pass == 1 && self.sweep_from.is_none() {
                break;
            }
        }
        for k in expired {
            self.keys.remove(&k);
        }
    }

    /// `DELETE /admin/rate-limits/...`: forgets `keys` (every policy's ledger key
    /// for one scoped key), so each starts a fresh window.
    pub fn reset(&mut self, keys: &[String]) -> usize {
        keys.iter()
            .filter(|k| self.keys.remove(*k).is_some())
            .count()
    }
}

/// Records `item` in the reporter's share of one window and grants it
/// `min(want, its demand share of free)` (at least 1 while anything is free).
/// Returns the share's total grant and what this call added; `None` for a
/// report of an earlier incarnation.
fn grant(
    shares: &mut Vec<Share>,
    stranded: &mut u64,
    report: &Report,
    item: &Item,
    now: u64,
    free: u64,
) -> Option<(u64, u64)> {
    let i = match shares.iter().position(|s| s.node == report.node) {
        Some(i) => i,
        None => {
            // Most keys are only ever used through one node: no spare room.
            shares.reserve_exact(1);
            shares.push(Share::fresh(report, now));
            shares.len() - 1
        }
    };
    let share = &mut shares[i];
    if share.incarnation > report.incarnation {
        // A report of an earlier life, delivered late: its hits were within
        // grants already counted as spent.
        return None;
    }
    if share.incarnation < report.incarnation {
        *stranded = stranded.saturating_add(share.granted);
        *share = Share::fresh(report, now);
    }
    share.reported = share.reported.saturating_add(item.hits);
    share.want = item.want;
    share.want_at_ms = now;
    let wanted = item.want;
    let mut added = 0;
    if wanted > 0 && free > 0 {
        let demand: u64 = shares
            .iter()
            .filter(|s| {
                s.node == report.node || now.saturating_sub(s.want_at_ms) <= DEMAND_FRESH_MS
            })
            .map(|s| s.want)
            .fold(0, u64::saturating_add);
        let share_of_free = u128::from(free) * u128::from(wanted) / u128::from(demand.max(1));
        let share_of_free = u64::try_from(share_of_free).unwrap_or(u64::MAX);
        added = wanted.min(share_of_free.max(1)).min(free);
        shares[i].granted = shares[i].granted.saturating_add(added);
    }
    Some((shares[i].granted, added))
}

fn saturate(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// A node's decision for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalVerdict {
    pub admitted: bool,
    pub remaining: u64,
    /// Unix ms at which the current window ends.
    pub reset_ms: u64,
    /// When to come back, for a refusal (ms from now).
    pub retry_after_ms: u64,
}

/// One key on one node: what it admitted in its current window and what it was
/// granted. All times are the node's clock (Unix ms).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalKey {
    pub window: u64,
    pub admitted: u64,
    pub granted: u64,
    /// Hits admitted since the last report, and attempts (admitted or not).
    pub unreported: u64,
    pub attempts: u32,
    /// Hits of the previous window not yet reported when it ended.
    /// (Of `window − 1`; 0: none.)
    pub tail: u64,
    /// The cluster's `remaining` at the last grant, and `admitted` then.
    /// (Kept in 32 bits, saturated: they size headers, not decisions.)
    pub remaining_seen: Option<(u32, u32)>,
    pub last_report_ms: u64,
    /// Last use: idle keys are evicted.
    pub last_seen_ms: u64,
    /// Attempts in the current window (its rate sizes the next window's ask).
    pub window_attempts: u32,
    /// Whether the next window's allowance was asked for, and what it is.
    pub asked_ahead: bool,
    /// Granted for `window + 1` (0: nothing yet).
    pub next: u64,
}

impl LocalKey {
    fn floor(&self, terms: &Terms, boot_ms: u64) -> u64 {
        if terms.window_start(self.window) >= boot_ms {
            terms.floor()
        } else {
            0
        }
    }

    fn roll_to(&mut self, terms: &Terms, now_ms: u64) {
        let w = terms.window_of(now_ms);
        // A clock that stepped back keeps counting in the window it was in.
        if w <= self.window {
            return;
        }
        if self.unreported > 0 && w == self.window + 1 {
            self.tail = self.unreported;
        } else {
            self.tail = 0;
        }
        let granted = if w == self.window + 1 { self.next } else { 0 };
        *self = LocalKey {
            window: w,
            granted,
            tail: self.tail,
            last_report_ms: self.last_report_ms,
            last_seen_ms: self.last_seen_ms,
            ..LocalKey::default()
        };
    }

    /// Whether to ask now for the next window's allowance: the key is busy in
    /// this window (beyond what its floor covers), which ends within a lookahead.
    fn ask_ahead(&self, terms: &Terms, now_ms: u64) -> bool {
        let lead = LOOKAHEAD_MS.min(terms.window_ms() / 4);
        !self.asked_ahead
            && u64::from(self.window_attempts) > terms.floor()
            && now_ms.saturating_add(lead) >= terms.window_end(self.window)
    }

    /// What to ask for the next window: this window's rate over a lookahead.
    fn want_ahead(&self, terms: &Terms, now_ms: u64) -> u64 {
        let elapsed = now_ms
            .saturating_sub(terms.window_start(self.window))
            .max(1);
        let rate =
            u128::from(self.window_attempts) * u128::from(LOOKAHEAD_MS) / u128::from(elapsed);
        u64::try_from(rate)
            .unwrap_or(u64::MAX)
            .max(terms.min_want())
            .min(terms.capacity())
    }

    /// Counts one request if this node's allowance admits it.
    pub fn admit(&mut self, terms: &Terms, now_ms: u64, boot_ms: u64) -> LocalVerdict {
        self.roll_to(terms, now_ms);
        self.last_seen_ms = now_ms;
        self.attempts = self.attempts.saturating_add(1);
        self.window_attempts = self.window_attempts.saturating_add(1);
        let budget = self.granted.saturating_add(self.floor(terms, boot_ms));
        let reset_ms = terms.window_end(self.window);
        let admitted = self.admitted < budget;
        if admitted {
            self.admitted += 1;
            self.unreported += 1;
        }
        let remaining = match self.remaining_seen {
            Some((r, at)) => {
                u64::from(r).saturating_sub(self.admitted.saturating_sub(u64::from(at)))
            }
            None => terms.limit.saturating_sub(self.admitted),
        };
        let remaining = if admitted {
            remaining.max(budget - self.admitted)
        } else {
            0
        };
        let retry_after_ms = if admitted {
            0
        } else if self.remaining_seen.is_some_and(|(r, _)| r == 0) || self.admitted >= terms.limit {
            // The cluster is out: come back when the window ends.
            reset_ms.saturating_sub(now_ms)
        } else {
            // Waiting for a grant: within a report round-trip.
            1000
        };
        LocalVerdict {
            admitted,
            remaining,
            reset_ms,
            retry_after_ms,
        }
    }

    /// Takes back one request `admit` counted (another policy refused it).
    pub fn undo(&mut self) {
        if self.admitted > 0 && self.unreported > 0 {
            self.admitted -= 1;
            self.unreported -= 1;
        }
    }

    /// How much more allowance this key wants now.
    fn want(&self, terms: &Terms, now_ms: u64, boot_ms: u64) -> u64 {
        let since = now_ms.saturating_sub(self.last_report_ms).max(1);
        let expected = u128::from(self.attempts) * u128::from(LOOKAHEAD_MS) / u128::from(since);
        let expected = u64::try_from(expected)
            .unwrap_or(u64::MAX)
            .max(terms.min_want())
            .min(terms.capacity());
        let headroom = self
            .granted
            .saturating_add(self.floor(terms, boot_ms))
            .saturating_sub(self.admitted);
        expected.saturating_sub(headroom)
    }

    /// Whether the next report should carry this key: it is short of allowance,
    /// or a window ended with hits not reported.
    pub fn due(&mut self, terms: &Terms, now_ms: u64, boot_ms: u64) -> bool {
        self.roll_to(terms, now_ms);
        if self.tail > 0 || self.ask_ahead(terms, now_ms) {
            return true;
        }
        if self.attempts == 0 {
            return false;
        }
        let headroom = self
            .granted
            .saturating_add(self.floor(terms, boot_ms))
            .saturating_sub(self.admitted);
        let want = self.want(terms, now_ms, boot_ms);
        want > 0 && headroom * 2 < want.saturating_add(headroom)
    }

    /// The items for the next report (the tail of the previous window, then the
    /// current one); resets what they carry.
    pub fn take_items(
        &mut self,
        key: &str,
        terms: &Terms,
        now_ms: u64,
        boot_ms: u64,
        out: &mut Vec<Item>,
    ) {
        self.roll_to(terms, now_ms);
        if self.tail > 0 {
            out.push(Item {
                key: key.to_owned(),
                terms: *terms,
                window: self.window - 1,
                hits: std::mem::take(&mut self.tail),
                want: 0,
            });
        }
        if self.attempts > 0 || self.unreported > 0 {
            out.push(Item {
                key: key.to_owned(),
                terms: *terms,
                window: self.window,
                hits: self.unreported,
                want: self.want(terms, now_ms, boot_ms),
            });
        }
        if self.ask_ahead(terms, now_ms) {
            self.asked_ahead = true;
            out.push(Item {
                key: key.to_owned(),
                terms: *terms,
                window: self.window + 1,
                hits: 0,
                want: self.want_ahead(terms, now_ms),
            });
        }
        self.unreported = 0;
        self.attempts = 0;
        self.last_report_ms = now_ms;
    }

    /// A grant for this node (its incarnation already checked) arrived.
    pub fn apply_grant(&mut self, grant: &Grant) {
        if grant.window == self.window + 1 {
            self.next = self.next.max(grant.granted);
            return;
        }
        if grant.window != self.window {
            return;
        }
        self.granted = self.granted.max(grant.granted);
        let at = self.admitted.saturating_sub(self.unreported);
        self.remaining_seen = Some((saturate(grant.remaining), saturate(at)));
    }

    /// The key was reset by an admin: a fresh window.
    pub fn reset(&mut self) {
        *self = LocalKey {
            window: self.window,
            last_seen_ms: self.last_seen_ms,
            ..LocalKey::default()
        };
    }
}

#[cfg(test)]
mod tests;
