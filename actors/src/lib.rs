//! `sluice-actors` owns the per-upstream and per-client runtime state: the
//! [`upstream::UpstreamPool`] (targets, load balancing and the read-only health
//! and breaker view the request path uses) and the supervised [`actor`]
//! `UpstreamActor` that writes that view (circuit breaker, active health checks).
//! The `ClientLimiter` (cluster-wide rate-limit allowances) and the
//! `WebhookDispatcher` join it with their issues; they are fed by the state
//! machine's deltas, never by polling the replicated state.
//!
//! Rule: actors publish read-only views (atomics, `ArcSwap`) that the request path
//! reads; the request path reports outcomes with `do_send` and never awaits an actor.
//!
//! Start reading at [`upstream::UpstreamPool::pick`], then [`actor::UpstreamHandle`].
#![forbid(unsafe_code)]

pub mod actor;
pub mod breaker;
pub mod limiter;
pub mod upstream;

pub use actor::{UpstreamEvents, UpstreamHandle};
pub use breaker::{BreakerState, Transition};
