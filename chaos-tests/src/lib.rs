//! `chaos-tests` holds the black-box cluster tests: they start real `sluice`
//! nodes, kill, pause and (on backends that can) partition them, and check the
//! invariants in DESIGN.md over HTTP.
//!
//! It depends on no internal crate of the product on purpose: it drives the built
//! binary only, so a test here sees exactly what an operator sees (the admin API,
//! Raft RPC refusals, the data plane) and can never reach past the process
//! boundary. Its one internal dependency is the dev-only test kit
//! (`sluice-testkit`, a `[dev-dependencies]` entry), which keeps the same rule:
//! processes, ports, temp dirs, the echo upstream, and `wait_for`.
//!
//! Where to start reading: `tests/cluster.rs` (one `#[test]` per failure scenario,
//! each with its own temp dir and ports, so they run in parallel), then
//! `tests/support/mod.rs` (the `Cluster`: every HTTP helper and every "wait until
//! the nodes agree"), `tests/support/backend.rs` (the `Backend` seam: start,
//! kill -9, pause/resume, partition/heal, addresses) and `tests/support/local.rs`
//! (`LocalProcesses`, the backend of today: one process per node on loopback,
//! each with its own `node.yaml`, `gateway.yaml` and data dir, restarted on the
//! same data dir). A Docker backend is a second `Backend`, not a second harness;
//! `LocalProcesses` answers `partition` with `BackendError::Unsupported`.
//!
//! The binary is found as `$SLUICE_BIN`, else next to the test executable
//! (`<target>/<profile>/sluice`), else `<CARGO_TARGET_DIR or target>/debug/sluice`.
//! `cargo test --workspace` builds it first; `cargo test -p chaos-tests` alone
//! does not (build it with `cargo build -p sluice`). A failed test keeps its temp
//! dir (node configs, data and logs) and prints where; `SLUICE_TEST_KEEP=1` keeps
//! them for passing tests too.
//!
//! Rules the tests keep: wait for state (poll `/admin/cluster`, `/health`, a
//! snapshot) with `wait_for`, never for time, and bound every loop by a count and
//! a deadline; loopback only; every process is killed when its guard drops.
#![forbid(unsafe_code)]
