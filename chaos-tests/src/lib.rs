//! `chaos-tests` will hold the black-box cluster tests: they spawn real `sluice`
//! processes (and, later, Docker containers on a private network), kill and
//! partition them, and check the invariants in DESIGN.md over HTTP.
//!
//! It depends on no internal crate on purpose: it drives the built binary only.
#![forbid(unsafe_code)]
