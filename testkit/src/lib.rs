//! `sluice-testkit` owns what every black-box test of Sluice needs and nothing
//! about any one scenario: finding the built `sluice` binary ([`Sluice`]), loopback
//! ports ([`free_port`]), temp dirs that outlive a failed test ([`TempDir`]), child
//! processes that are killed on drop and show their log when something times out
//! ([`Proc`]), the echo upstream ([`Echo`]), one HTTP round trip read whole
//! ([`send`], [`Answer`]), HTTP written by hand for what a client would tidy up
//! and an upstream that shows every header line it received ([`raw_request`],
//! [`Recorder`]), key pairs for test tokens ([`KeyPair`], by the `openssl` CLI),
//! Prometheus scraping ([`Metrics`]), and the one way a
//! test waits: [`wait_for`] / [`wait_for_async`], which poll a condition every
//! [`POLL_INTERVAL`] until a deadline and then panic with what was awaited, the last
//! value seen and a log dump.
//!
//! It must never depend on another crate of this workspace, nor reach past the
//! process boundary: it starts the binary, sends it signals, and talks to it over
//! HTTP, exactly as an operator would. It is a dev-dependency only (of `sluice`'s
//! integration tests and of `chaos-tests`); nothing shipped links it. And it never
//! waits for a fixed time: every wait is a poll of observable state.
//!
//! Where to start reading: [`wait`] (the polling contract), then [`Proc`] and
//! [`Echo`]. `node/tests/support/mod.rs` (one gateway) and
//! `chaos-tests/tests/support/` (a cluster behind a backend seam) build on it.
#![forbid(unsafe_code)]

mod bin;
mod dir;
mod echo;
mod http;
mod keys;
mod metrics;
mod net;
mod process;
mod raw;
pub mod wait;

pub use bin::Sluice;
pub use dir::TempDir;
pub use echo::Echo;
pub use http::{client, send, Answer};
pub use keys::KeyPair;
pub use metrics::Metrics;
pub use net::{free_port, port_open};
pub use process::{tail, Proc, Signal};
pub use raw::{raw_request, read_raw_head, RawAnswer, Recorder};
pub use wait::{wait_for, wait_for_async, Logs, Probe, Seen, NO_LOGS, POLL_INTERVAL};
