//! `sluice-actors` owns the per-upstream and per-client runtime state: today the
//! [`upstream::UpstreamPool`] (target selection and the read-only health view the
//! request path uses); next the `UpstreamActor` that writes that view (circuit
//! breaker, active health checks), the `ClientLimiter` (cluster-wide rate-limit
//! allowances) and the `WebhookDispatcher`, with their supervisors.
//!
//! Rule: actors publish read-only views (atomics, `ArcSwap`) that the request path
//! reads; the request path reports outcomes with `do_send` and never awaits an actor.
//!
//! Start reading at [`upstream::UpstreamPool::pick`].
#![forbid(unsafe_code)]

pub mod actor;
pub mod breaker;
pub mod upstream;

pub use actor::{UpstreamEvents, UpstreamHandle};
pub use breaker::{BreakerState, Transition};
