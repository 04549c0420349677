//! Memory of the rate limiter per active key, in-process: `cargo run --release
//! -p sluice-actors --example limiter_memory -- 1000000`. Creates N keys on one
//! node (each admitted once, reported and granted), applies the reports to a
//! replicated ledger, and prints the resident set size growth. The end-to-end
//! figure (a real node under HTTP load) is in `scripts/bench-ratelimit.sh`.

use sluice_actors::limiter::{now_ms, Algorithm, ClientLimiters, Policy, Verdict};
use sluice_raft::limits::Ledger;
use sluice_raft::Delta;
use std::time::Duration;

// The node's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let policy = Policy {
        name: "per-ip".into(),
        limit: 100,
        window: Duration::from_secs(60),
        algorithm: Algorithm::SlidingWindow,
    };
    let limiters = ClientLimiters::new(1, 0);
    limiters.set_members(3);
    let mut ledger = Ledger::default();
    let members = [1, 2, 3].into();
    let before = rss_kib();
    if std::env::args().nth(2).as_deref() == Some("ledger") {
        // The ledger alone, as on a node that got none of the traffic.
        let terms = sluice_raft::limits::Terms {
            limit: 100,
            window_ms: 60_000,
            algo: sluice_raft::limits::Algo::SlidingWindow,
            members: 3,
        };
        let now = now_ms();
        for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
            let items = chunk
                .iter()
                .map(|i| sluice_raft::limits::Item {
                    key: sluice_raft::limits::ledger_key(
                        "per-ip",
                        &format!("ip:10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255),
                    ),
                    terms,
                    window: terms.window_of(now),
                    hits: 1,
                    want: 10,
                })
                .collect();
            let r = sluice_raft::limits::Report {
                node: 2,
                incarnation: 1,
                now_ms: now,
                items,
            };
            ledger.apply(&r, &members);
        }
        let after = rss_kib();
        println!(
            "ledger alone: {} keys, rss +{} MiB ({} bytes/key)",
            ledger.keys.len(),
            (after - before) / 1024,
            (after - before) * 1024 / n as u64
        );
        return;
    }
    for i in 0..n {
        let key = format!("ip:10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        let v = limiters.acquire(&policy, &key);
        assert!(matches!(v, Verdict::Admitted(_)));
        if i % 10_000 == 9_999 || i == n - 1 {
            if let Some(report) = limiters.collect(now_ms()) {
                let g = ledger.apply(&report, &members);
                limiters.apply_delta(&Delta::LimitsGranted(g));
            }
        }
    }
    let after = rss_kib();
    let local = limiters.active_keys();
    println!(
        "keys {n}: local {} ledger {} rss +{} MiB ({} bytes/key)",
        local,
        ledger.keys.len(),
        (after - before) / 1024,
        (after - before) * 1024 / n as u64
    );
}
