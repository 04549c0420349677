//! `chaos-tests` holds the black-box cluster tests: they spawn real `sluice`
//! processes (and, later, Docker containers on a private network), kill and
//! partition them, and check the invariants in DESIGN.md over HTTP.
//!
//! It depends on no internal crate on purpose: it drives the built binary only,
//! so a test here sees exactly what an operator sees (the admin API, Raft RPC
//! refusals, the data plane) and can never reach past the process boundary.
//!
//! Where to start reading: `tests/cluster.rs` (one `#[test]` per failure scenario,
//! each with its own temp dir and ports, so they run in parallel) and
//! `tests/support/mod.rs` (the harness: a `Cluster` of processes that
//! writes each node's `node.yaml`, starts/kill -9s/restarts nodes on the same data
//! dir, and prints every node's log tail when an assertion fails).
//!
//! The binary is found as `$SLUICE_BIN`, else next to the test executable
//! (`<target>/<profile>/sluice`), else `<CARGO_TARGET_DIR or target>/debug/sluice`.
//! `cargo test --workspace` builds it first; `cargo test -p chaos-tests` alone
//! does not (build it with `cargo build -p sluice`).
//!
//! Rules the tests keep: wait for state (poll `/admin/cluster`, `/health`), never
//! for time, and bound every loop by a count and a deadline; loopback only; every
//! process is killed when its guard drops.
#![forbid(unsafe_code)]
