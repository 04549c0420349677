//! Apply code of the webhook commands: checks the command's shape, hands it to
//! [`crate::webhooks::Webhooks`] (reached through [`ApplyCtx`]) and tells the
//! dispatcher when there is something new to deliver.

use super::{not_found, rejected, ApplyCtx, Delta};
use crate::command::Response;
use crate::webhooks::{AttemptReport, Event, ReplayTarget, Subscription, WebhookSecret};

pub(super) fn put_subscription(ctx: &mut ApplyCtx<'_>, sub: &Subscription) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    match hooks.put_subscription(sub.clone()) {
        Ok(()) => {
            ctx.deltas.push(Delta::WebhooksChanged);
            Response::Applied
        }
        Err(message) => rejected("subscription", message),
    }
}

pub(super) fn delete_subscription(ctx: &mut ApplyCtx<'_>, id: &str) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    if hooks.delete_subscription(id) {
        ctx.deltas.push(Delta::WebhooksChanged);
        Response::Applied
    } else {
        not_found("subscription", id)
    }
}

pub(super) fn rotate(
    ctx: &mut ApplyCtx<'_>,
    id: &str,
    secret: &WebhookSecret,
    now_ms: u64,
    grace_ms: u64,
) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    if secret.is_empty() {
        return rejected("secret", "a rotation needs a new secret");
    }
    if hooks.rotate_secret(id, secret, now_ms, grace_ms) {
        Response::Applied
    } else {
        not_found("subscription", id)
    }
}

pub(super) fn publish(
    ctx: &mut ApplyCtx<'_>,
    event: &Event,
    key: Option<&str>,
    now_ms: u64,
) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    if event.id.is_empty() || event.event_type.is_empty() {
        return rejected("type", "an event needs an id and a type");
    }
    let published = hooks.publish(event, key, now_ms);
    if published.created {
        ctx.deltas.push(Delta::WebhooksChanged);
    }
    Response::Event {
        id: published.id,
        created: published.created,
    }
}

pub(super) fn record(ctx: &mut ApplyCtx<'_>, reports: &[AttemptReport]) -> Response {
    if let Some(hooks) = ctx.webhooks.as_deref_mut() {
        let n = hooks.record(reports);
        if n > 0 {
            ctx.deltas.push(Delta::WebhooksChanged);
        }
        return Response::Count { count: n as u64 };
    }
    Response::Applied
}

pub(super) fn replay(ctx: &mut ApplyCtx<'_>, target: &ReplayTarget, now_ms: u64) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    if let ReplayTarget::One(seq) = target {
        if !hooks.deliveries.contains_key(seq) {
            return not_found("delivery", &seq.to_string());
        }
    }
    if let ReplayTarget::Subscription(id) = target {
        if !hooks.subscriptions.contains_key(id) {
            return not_found("subscription", id);
        }
    }
    let n = hooks.replay(target, now_ms);
    if n > 0 {
        ctx.deltas.push(Delta::WebhooksChanged);
    }
    Response::Count { count: n as u64 }
}

pub(super) fn purge(
    ctx: &mut ApplyCtx<'_>,
    now_ms: u64,
    delivered_ms: u64,
    dead_ms: u64,
) -> Response {
    let Some(hooks) = ctx.webhooks.as_deref_mut() else {
        return Response::Applied;
    };
    let (deliveries, _events) = hooks.purge(now_ms, delivered_ms, dead_ms);
    Response::Count {
        count: deliveries as u64,
    }
}
