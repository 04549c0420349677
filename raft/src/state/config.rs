//! The config domain: services, routes, rate limits and auth settings, as one
//! [`GatewaySpec`]. Every change builds the next spec and validates it whole, so
//! an accepted change can never leave routes pointing at a missing service.

use super::{not_found, ClusterState};
use crate::command::{route_id, Response};
use crate::state::Validator;
use cluster_config::schema::{GatewaySpec, RouteSpec, ServiceSpec};
use std::sync::Arc;

/// `PUT /admin/config`, `sluice apply`, SIGHUP: the whole spec at once.
pub fn replace(state: &mut ClusterState, next: GatewaySpec, validate: &Validator) -> Response {
    install(state, next, validate)
}

/// The YAML a node found at its first start: applied only while no gateway config
/// was ever set, so after that the replicated state is the source of truth.
pub fn seed(state: &mut ClusterState, spec: &GatewaySpec, validate: &Validator) -> Response {
    if state.seeded {
        return Response::Applied;
    }
    install(state, spec.clone(), validate)
}

pub fn put_service(
    state: &mut ClusterState,
    name: &str,
    spec: &ServiceSpec,
    validate: &Validator,
) -> Response {
    let mut next = (*state.gateway).clone();
    next.services.insert(name.to_owned(), spec.clone());
    install(state, next, validate)
}

pub fn delete_service(state: &mut ClusterState, name: &str, validate: &Validator) -> Response {
    if !state.gateway.services.contains_key(name) {
        return not_found("service", name);
    }
    let mut next = (*state.gateway).clone();
    next.services.remove(name);
    install(state, next, validate)
}

/// Insert or replace by id; a replaced route keeps its position (order breaks
/// priority ties).
pub fn put_route(state: &mut ClusterState, route: &RouteSpec, validate: &Validator) -> Response {
    let mut next = (*state.gateway).clone();
    let id = route_id(route);
    match next.routes.iter_mut().find(|r| route_id(r) == id) {
        Some(slot) => *slot = route.clone(),
        None => next.routes.push(route.clone()),
    }
    install(state, next, validate)
}

pub fn delete_route(state: &mut ClusterState, id: &str, validate: &Validator) -> Response {
    if !state.gateway.routes.iter().any(|r| route_id(r) == id) {
        return not_found("route", id);
    }
    let mut next = (*state.gateway).clone();
    next.routes.retain(|r| route_id(r) != id);
    install(state, next, validate)
}

/// Makes `next` the replicated spec if it validates; otherwise nothing changes.
fn install(state: &mut ClusterState, next: GatewaySpec, validate: &Validator) -> Response {
    match validate(&next) {
        Ok(()) => {
            state.gateway = Arc::new(next);
            state.seeded = true;
            Response::Applied
        }
        Err(problems) => Response::Rejected { problems },
    }
}
