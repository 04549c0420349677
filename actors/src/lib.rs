//! `sluice-actors` will own the per-upstream and per-client actors: the
//! `UpstreamActor` (circuit breaker, active health checks, target selection),
//! the `ClientLimiter` (cluster-wide rate-limit allowances) and the
//! `WebhookDispatcher`, plus their supervisors.
//!
//! Actors publish read-only views (atomics, `ArcSwap`) that the request path reads;
//! the request path reports outcomes with `do_send` and never awaits an actor.
#![forbid(unsafe_code)]
