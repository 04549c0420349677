//! Unit tests of both algorithms and a property test of the cluster accounting
//! against a model of N nodes with random traffic, report delays, lagging
//! appliers, restarts and a partitioned node.

use super::*;
use proptest::prelude::*;

const W: u64 = 10_000;

fn sliding(limit: u64) -> Terms {
    Terms {
        limit,
        window_ms: W,
        algo: Algo::SlidingWindow,
        members: 0,
    }
}

fn bucket(limit: u64, burst: u64) -> Terms {
    Terms {
        limit,
        window_ms: W,
        algo: Algo::TokenBucket { burst },
        members: 0,
    }
}

fn members(n: u64) -> BTreeSet<NodeId> {
    (1..=n).collect()
}

fn report(node: NodeId, now_ms: u64, items: Vec<Item>) -> Report {
    Report {
        node,
        incarnation: 1,
        now_ms,
        items,
    }
}

fn item(terms: Terms, window: u64, hits: u64, want: u64) -> Item {
    Item {
        key: ledger_key("p", "user:a"),
        terms,
        window,
        hits,
        want,
    }
}

#[test]
fn keys_split_back() {
    let k = ledger_key("search", "user:a/b");
    assert_eq!(split_key(&k), ("search", "user:a/b"));
}

#[test]
fn floor_is_one_percent_rounded_down() {
    assert_eq!(sliding(9).floor(), 0);
    assert_eq!(sliding(10).floor(), 1);
    assert_eq!(sliding(99).floor(), 1);
    assert_eq!(sliding(100).floor(), 1);
    assert_eq!(sliding(1999).floor(), 19);
}

#[test]
fn a_lone_reporter_is_granted_all_that_is_free_but_the_others_floors() {
    let t = sliding(1000);
    let mut l = Ledger::default();
    let g = l.apply(&report(1, 5 * W, vec![item(t, 5, 0, 5000)]), &members(3));
    assert_eq!(g.grants[0].granted, 1000 - 3 * 10);
    // Nothing is left to grant: a second node gets nothing but its floor.
    let g = l.apply(&report(2, 5 * W + 1, vec![item(t, 5, 0, 10)]), &members(3));
    assert_eq!(g.grants[0].granted, 0);
}

#[test]
fn grants_follow_demand_shares() {
    let t = sliding(1000);
    let mut l = Ledger::default();
    let m = members(3);
    l.apply(&report(1, 5 * W, vec![item(t, 5, 0, 100)]), &m);
    l.apply(&report(2, 5 * W + 1, vec![item(t, 5, 0, 900)]), &m);
    let k = &l.keys[&ledger_key("p", "user:a")];
    // Node 1 asked for 100 and got it; node 2 gets its share of the rest.
    assert_eq!(k.shares[0].granted, 100);
    assert!(k.shares[1].granted <= 970 - 100);
    assert!(k.shares[1].granted >= 700, "{k:?}");
}

#[test]
fn the_sliding_cap_weighs_the_previous_window() {
    let t = sliding(100);
    let mut l = Ledger::default();
    let m = members(2);
    // 100 hits reported in window 5.
    l.apply(&report(1, 5 * W, vec![item(t, 5, 100, 0)]), &m);
    // A quarter into window 6: the previous window still weighs 75.
    let g = l.apply(&report(1, 6 * W + W / 4, vec![item(t, 6, 0, 100)]), &m);
    assert_eq!(g.grants[0].granted, 100 - 75 - 2);
    // Later in the window more is free; earlier grants stand.
    let g = l.apply(&report(1, 6 * W + W / 2, vec![item(t, 6, 0, 100)]), &m);
    assert_eq!(g.grants[0].granted, 100 - 50 - 2);
}

#[test]
fn ended_windows_get_no_grant_and_are_never_recreated() {
    let t = sliding(100);
    let mut l = Ledger::default();
    let m = members(2);
    l.apply(&report(1, 5 * W, vec![item(t, 5, 10, 10)]), &m);
    // Another node's clock says window 5 is over.
    l.apply(&report(2, 6 * W, vec![]), &m);
    let g = l.apply(&report(1, 5 * W + 10, vec![item(t, 5, 0, 50)]), &m);
    assert_eq!(g.grants[0].granted, 10, "no more than before");
    // Long after, the key is dropped and window 5 stays closed.
    l.apply(&report(2, 9 * W, vec![]), &m);
    assert!(l.keys.is_empty());
    let g = l.apply(&report(1, 9 * W, vec![item(t, 5, 0, 50)]), &m);
    assert!(g.grants.is_empty());
    assert!(l.keys.is_empty());
}

#[test]
fn a_restarted_node_leaves_its_grants_spent() {
    let t = sliding(1000);
    let mut l = Ledger::default();
    let m = members(3);
    l.apply(&report(1, 5 * W, vec![item(t, 5, 0, 500)]), &m);
    let mut r = report(1, 5 * W + 100, vec![item(t, 5, 0, 1000)]);
    r.incarnation = 2;
    let g = l.apply(&r, &m);
    // 500 stranded: the new incarnation gets the rest, not a fresh window.
    assert_eq!(g.grants[0].granted, 1000 - 30 - 500);
    // A late report of the old life changes nothing.
    let g = l.apply(&report(1, 5 * W + 200, vec![item(t, 5, 5, 50)]), &m);
    assert!(g.grants.is_empty());
}

#[test]
fn the_bucket_refills_at_the_rate() {
    let t = bucket(100, 20);
    let mut l = Ledger::default();
    let m = members(1);
    let g = l.apply(&report(1, 5 * W, vec![item(t, 5, 0, 1000)]), &m);
    assert_eq!(g.grants[0].granted, 20, "the burst");
    // A tenth of a window later, a tenth of (limit − floor) more.
    let g = l.apply(&report(1, 5 * W + W / 10, vec![item(t, 5, 20, 1000)]), &m);
    assert_eq!(g.grants[0].granted, 20 + 9);
}

#[test]
fn a_single_member_owns_the_whole_sliding_limit_as_its_floor() {
    let mut t = sliding(5);
    t.members = 1;
    assert_eq!(t.floor(), 5);
    let mut k = LocalKey::default();
    for _ in 0..5 {
        assert!(k.admit(&t, 5 * W, 0).admitted);
    }
    assert!(!k.admit(&t, 5 * W, 0).admitted);
    // And the ledger grants it nothing more.
    let mut l = Ledger::default();
    let g = l.apply(&report(1, 5 * W, vec![item(t, 5, 5, 10)]), &members(1));
    assert_eq!(g.grants[0].granted, 0);
}

#[test]
fn reset_forgets_a_key() {
    let t = sliding(100);
    let mut l = Ledger::default();
    l.apply(&report(1, 5 * W, vec![item(t, 5, 50, 50)]), &members(1));
    assert_eq!(l.reset(&[ledger_key("p", "user:a")]), 1);
    assert!(l.keys.is_empty());
}

#[test]
fn local_floor_then_grant_then_refusal() {
    let t = sliding(100);
    let boot = 0;
    let mut k = LocalKey::default();
    let now = 5 * W;
    assert!(k.admit(&t, now, boot).admitted, "the floor");
    let v = k.admit(&t, now, boot);
    assert!(!v.admitted, "no grant yet");
    assert_eq!(v.retry_after_ms, 1000);
    assert!(k.due(&t, now, boot));
    let mut items = Vec::new();
    k.take_items("k", &t, now, boot, &mut items);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].hits, 1);
    assert!(items[0].want >= 10);
    k.apply_grant(&Grant {
        key: "k".into(),
        window: 5,
        granted: 3,
        remaining: 99,
    });
    for _ in 0..3 {
        assert!(k.admit(&t, now, boot).admitted);
    }
    assert!(!k.admit(&t, now, boot).admitted);
    // The next window starts from the floor again, and reports the tail.
    let v = k.admit(&t, 6 * W, boot);
    assert!(v.admitted);
    assert!(k.due(&t, 6 * W, boot));
    let mut items = Vec::new();
    k.take_items("k", &t, 6 * W, boot, &mut items);
    assert_eq!((items[0].window, items[0].hits), (5, 3));
    assert_eq!((items[1].window, items[1].hits), (6, 1));
}

#[test]
fn a_new_incarnation_has_no_floor_in_the_window_it_booted_in() {
    let t = sliding(100);
    let mut k = LocalKey::default();
    assert!(!k.admit(&t, 5 * W + 10, 5 * W + 5).admitted);
    assert!(k.admit(&t, 6 * W, 5 * W + 5).admitted);
}

#[test]
fn undo_gives_a_request_back() {
    let t = sliding(100);
    let mut k = LocalKey::default();
    assert!(k.admit(&t, 5 * W, 0).admitted);
    assert!(!k.admit(&t, 5 * W, 0).admitted);
    k.undo();
    assert!(k.admit(&t, 5 * W, 0).admitted);
}

// ---------------------------------------------------------------------------
// The model: N nodes, one key, a log applied in order to one ledger (every node
// applies the same log, so one ledger stands for all), each node learning its
// grants when it catches up with the log.

#[derive(Debug, Clone)]
enum Event {
    /// Time passes (ms).
    Tick(u64),
    /// `count` requests reach node `n`.
    Requests(usize, u64),
    /// Node `n` proposes its report; it commits after `delay` ms (if it can).
    Report(usize, u64),
    /// Node `n` applies the log up to what has committed.
    CatchUp(usize),
    /// Node `n` is killed and restarts at once (a new incarnation).
    Restart(usize),
    /// Node `n` is cut off from the others (its proposals fail, it applies
    /// nothing) until the next `Heal`.
    Partition(usize),
    Heal,
}

struct Node {
    id: NodeId,
    drift: i64,
    boot: u64,
    key: LocalKey,
    applied: usize,
}

struct Model {
    terms: Terms,
    now: u64,
    nodes: Vec<Node>,
    ledger: Ledger,
    members: BTreeSet<NodeId>,
    /// Committed entries: the grants each produced.
    log: Vec<Granted>,
    in_flight: Vec<(u64, Report)>,
    cut: Option<usize>,
    /// Admitted per window, by each node's own clock.
    admitted: BTreeMap<u64, u64>,
}

const KEY: &str = "p\u{1f}user:a";

impl Model {
    fn new(terms: Terms, drifts: &[i64], start: u64) -> Model {
        let nodes = drifts
            .iter()
            .enumerate()
            .map(|(i, d)| Node {
                id: i as u64 + 1,
                drift: *d,
                boot: 0,
                key: LocalKey::default(),
                applied: 0,
            })
            .collect::<Vec<_>>();
        Model {
            terms,
            now: start,
            members: nodes.iter().map(|n| n.id).collect(),
            nodes,
            ledger: Ledger::default(),
            log: Vec::new(),
            in_flight: Vec::new(),
            cut: None,
            admitted: BTreeMap::new(),
        }
    }

    fn clock(&self, n: usize) -> u64 {
        self.now.saturating_add_signed(self.nodes[n].drift)
    }

    fn commit_due(&mut self) {
        let now = self.now;
        let (due, later): (Vec<_>, Vec<_>) =
            self.in_flight.drain(..).partition(|(at, _)| *at <= now);
        self.in_flight = later;
        for (_, r) in due {
            let g = self.ledger.apply(&r, &self.members);
            self.log.push(g);
        }
    }

    fn step(&mut self, e: &Event) {
        match *e {
            Event::Tick(ms) => {
                self.now += ms;
                self.commit_due();
            }
            Event::Requests(n, count) => {
                let clock = self.clock(n);
                let (terms, boot) = (self.terms, self.nodes[n].boot);
                for _ in 0..count {
                    let v = self.nodes[n].key.admit(&terms, clock, boot);
                    if v.admitted {
                        *self.admitted.entry(terms.window_of(clock)).or_default() += 1;
                    }
                }
            }
            Event::Report(n, delay) => {
                let clock = self.clock(n);
                let (terms, boot) = (self.terms, self.nodes[n].boot);
                let node = &mut self.nodes[n];
                if !node.key.due(&terms, clock, boot) {
                    return;
                }
                let mut items = Vec::new();
                node.key.take_items(KEY, &terms, clock, boot, &mut items);
                let r = Report {
                    node: node.id,
                    incarnation: node.boot,
                    now_ms: clock,
                    items,
                };
                // A cut-off node's proposal never commits.
                if self.cut != Some(n) {
                    self.in_flight.push((self.now + delay, r));
                }
            }
            Event::CatchUp(n) => {
                if self.cut == Some(n) {
                    return;
                }
                let node = &mut self.nodes[n];
                for g in &self.log[node.applied..] {
                    if g.node == node.id && g.incarnation == node.boot {
                        for grant in &g.grants {
                            node.key.apply_grant(grant);
                        }
                    }
                }
                node.applied = self.log.len();
            }
            Event::Restart(n) => {
                let clock = self.clock(n);
                let node = &mut self.nodes[n];
                // Boot times only grow (the same host's clock).
                node.boot = clock.max(node.boot + 1);
                node.key = LocalKey::default();
            }
            Event::Partition(n) => self.cut = Some(n),
            Event::Heal => self.cut = None,
        }
    }
}

fn event(nodes: usize) -> impl Strategy<Value = Event> {
    prop_oneof![
        6 => (1u64..300).prop_map(Event::Tick),
        8 => (0..nodes, 1u64..60).prop_map(|(n, c)| Event::Requests(n, c)),
        6 => (0..nodes, 0u64..400).prop_map(|(n, d)| Event::Report(n, d)),
        6 => (0..nodes).prop_map(Event::CatchUp),
        1 => (0..nodes).prop_map(Event::Restart),
        1 => (0..nodes).prop_map(Event::Partition),
        1 => Just(Event::Heal),
    ]
}

fn terms() -> impl Strategy<Value = Terms> {
    prop_oneof![
        (1u64..2000).prop_map(sliding),
        (1u64..2000, 1u64..500).prop_map(|(l, b)| bucket(l, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Whatever the traffic, delays, restarts and partition: per fixed window,
    /// the cluster admits at most the limit (token bucket: burst + limit).
    #[test]
    fn never_more_than_the_limit_per_window(
        terms in terms(),
        drifts in proptest::collection::vec(-300i64..300, 3),
        events in proptest::collection::vec(event(3), 1..600),
    ) {
        let mut m = Model::new(terms, &drifts, 1_000_000);
        for e in &events {
            m.step(e);
        }
        let bound = match terms.algo {
            Algo::SlidingWindow => terms.limit,
            Algo::TokenBucket { burst } => terms.limit + burst,
        };
        for (w, n) in &m.admitted {
            prop_assert!(*n <= bound, "window {w}: admitted {n} > {bound}");
        }
    }
}

/// Drives node 0 alone at `rate` requests per 10 ms, reporting every 100 ms with
/// a commit delay of `delay` ms, through one whole window; returns what it admitted.
fn lone_busy_node(terms: Terms, rate: u64, delay: u64) -> u64 {
    let mut m = Model::new(terms, &[0, 0, 0], 5 * W);
    let end = 6 * W;
    while m.now < end {
        m.step(&Event::Requests(0, rate));
        if m.now.is_multiple_of(100) {
            m.step(&Event::Report(0, delay));
        }
        m.step(&Event::Tick(10));
        m.step(&Event::CatchUp(0));
    }
    m.admitted.get(&5).copied().unwrap_or(0)
}

#[test]
fn a_lone_busy_node_reaches_97_percent() {
    for limit in [100, 1000, 10_000] {
        // 20 times the rate.
        let rate = (limit * 20 / (W / 10)).max(1);
        for delay in [0, 20, 50] {
            let got = lone_busy_node(sliding(limit), rate, delay);
            assert!(
                got * 100 >= limit * 97,
                "limit {limit}, delay {delay}: {got}"
            );
            assert!(got <= limit);
        }
    }
}

#[test]
fn round_robin_over_three_nodes_reaches_97_percent() {
    let t = sliding(1000);
    let mut m = Model::new(t, &[0, 40, -40], 5 * W);
    let mut i = 0;
    while m.now < 6 * W - 50 {
        for _ in 0..6 {
            m.step(&Event::Requests(i % 3, 1));
            i += 1;
        }
        if m.now.is_multiple_of(100) {
            for n in 0..3 {
                m.step(&Event::Report(n, 20));
            }
        }
        m.step(&Event::Tick(10));
        for n in 0..3 {
            m.step(&Event::CatchUp(n));
        }
    }
    let got = m.admitted.get(&5).copied().unwrap_or(0);
    assert!((970..=1000).contains(&got), "{got}");
}

#[test]
fn a_cut_off_node_never_pushes_the_total_past_the_limit() {
    let t = sliding(1000);
    let mut m = Model::new(t, &[0, 0, 0], 5 * W);
    // Node 2 is granted a share, then cut off mid-window while the others hammer.
    while m.now < 6 * W + 5 * W / 2 {
        if m.now == 5 * W + 2000 {
            m.step(&Event::Partition(2));
        }
        for n in 0..3 {
            m.step(&Event::Requests(n, 3));
        }
        if m.now.is_multiple_of(100) {
            for n in 0..3 {
                m.step(&Event::Report(n, 10));
            }
        }
        m.step(&Event::Tick(10));
        for n in 0..3 {
            m.step(&Event::CatchUp(n));
        }
    }
    for (w, n) in &m.admitted {
        assert!(*n <= 1000, "window {w}: {n}");
    }
    // The next window: the others use all of it but the cut-off node's floor.
    let next = m.admitted[&6];
    assert!(next >= 970, "{next}");
}

/// A steady key under its limit never meets its floor at a window start: each
/// node asks ahead for the next window and holds a grant when it begins.
#[test]
fn steady_traffic_under_the_limit_is_never_refused_at_window_starts() {
    let w = 3_000;
    let t = Terms {
        window_ms: w,
        ..sliding(1000)
    };
    let mut m = Model::new(t, &[0, 30, -30], 5 * w);
    let mut refused = BTreeMap::<u64, u64>::new();
    let mut i = 0;
    // 600 per window over three nodes, 2 requests every 10 ms step, with
    // commits taking 150 ms: a node's floor (10) lasts 150 ms, less than a
    // report's round trip.
    while m.now < 8 * w {
        for _ in 0..2 {
            let n = i % 3;
            i += 1;
            let clock = m.clock(n);
            let boot = m.nodes[n].boot;
            let v = m.nodes[n].key.admit(&t, clock, boot);
            let e = if v.admitted {
                m.admitted.entry(t.window_of(clock))
            } else {
                refused.entry(t.window_of(clock))
            };
            *e.or_default() += 1;
        }
        if m.now.is_multiple_of(100) {
            for n in 0..3 {
                m.step(&Event::Report(n, 150));
            }
        }
        m.step(&Event::Tick(10));
        for n in 0..3 {
            m.step(&Event::CatchUp(n));
        }
    }
    for win in [6, 7] {
        assert_eq!(refused.get(&win), None, "window {win}: {refused:?}");
        // (Clock drift moves a request or two across the window edges.)
        assert!(m.admitted[&win] >= 596, "window {win}: {:?}", m.admitted);
    }
}
