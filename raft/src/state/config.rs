//! The config domain: services, routes, rate limits and auth settings, as one
//! [`GatewaySpec`]. Every change builds the next spec and validates it whole, so
//! an accepted change can never leave routes pointing at a missing service.
//!
//! HS256 secrets (`auth.jwt.keys[].secret`) are stored as configured but never
//! shown back: readers show [`redact_secrets`]'s copy, and a whole spec written
//! back with the [`REDACTED`] placeholder keeps the stored secret of the key with
//! the same `kid` ([`replace`] resolves it here, against the state the command
//! lands on, so two writers racing through different nodes cannot resurrect an
//! old secret).

use super::{not_found, ClusterState};
use crate::command::{route_id, Problem, Response};
use crate::state::Validator;
use cluster_config::schema::{GatewaySpec, RouteSpec, ServiceSpec};
use std::sync::Arc;

/// What the admin API shows in place of a shared secret, and what a writer sends
/// back to mean "keep the stored one".
pub const REDACTED: &str = "<redacted>";

/// A copy of `spec` fit to be shown: every `auth.jwt.keys[].secret` replaced by
/// [`REDACTED`].
pub fn redact_secrets(spec: &GatewaySpec) -> GatewaySpec {
    let mut shown = spec.clone();
    let keys = shown.auth.jwt.as_mut();
    for key in keys.into_iter().flat_map(|jwt| jwt.keys.iter_mut()) {
        if key.secret.is_some() {
            key.secret = Some(REDACTED.to_owned());
        }
    }
    shown
}

/// Replaces each [`REDACTED`] secret in `next` by the secret `stored` holds for
/// the key with the same `kid`. A placeholder with nothing to keep is a problem
/// at its key path; every such key is reported.
fn restore_secrets(next: &mut GatewaySpec, stored: &GatewaySpec) -> Result<(), Vec<Problem>> {
    let stored_secret = |kid: &str| {
        let jwt = stored.auth.jwt.as_ref()?;
        jwt.keys
            .iter()
            .find(|k| k.kid == kid)?
            .secret
            .clone()
            .filter(|s| s != REDACTED)
    };
    let mut problems = Vec::new();
    let keys = next.auth.jwt.as_mut();
    for (i, key) in keys
        .into_iter()
        .flat_map(|jwt| jwt.keys.iter_mut())
        .enumerate()
    {
        if key.secret.as_deref() != Some(REDACTED) {
            continue;
        }
        match stored_secret(&key.kid) {
            Some(secret) => key.secret = Some(secret),
            None => problems.push(Problem::new(
                format!("auth.jwt.keys[{i}].secret"),
                format!(
                    "is the {REDACTED:?} placeholder, but no stored key with kid {:?} has a \
                     secret to keep; send the secret itself",
                    key.kid
                ),
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// `PUT /admin/config`, `sluice apply`, SIGHUP: the whole spec at once. Redacted
/// secrets keep the stored ones (see the module docs).
pub fn replace(state: &mut ClusterState, mut next: GatewaySpec, validate: &Validator) -> Response {
    if let Err(problems) = restore_secrets(&mut next, &state.gateway) {
        return Response::Rejected { problems };
    }
    install(state, next, validate)
}

/// The YAML a node found at its first start: applied only while no gateway config
/// was ever set, so after that the replicated state is the source of truth. There
/// is nothing stored yet, so a redacted secret in it is refused.
pub fn seed(state: &mut ClusterState, spec: &GatewaySpec, validate: &Validator) -> Response {
    if state.seeded {
        return Response::Applied;
    }
    let mut next = spec.clone();
    if let Err(problems) = restore_secrets(&mut next, &state.gateway) {
        return Response::Rejected { problems };
    }
    install(state, next, validate)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::Command;
    use crate::state::tests::test_validator;
    use crate::state::ApplyCtx;
    use cluster_config::schema::{AuthSpec, JwtKeySpec, JwtSpec};

    fn hs(kid: &str, secret: &str) -> JwtKeySpec {
        JwtKeySpec {
            kid: kid.into(),
            alg: "HS256".into(),
            secret: Some(secret.into()),
            ..Default::default()
        }
    }

    fn with_keys(keys: Vec<JwtKeySpec>) -> GatewaySpec {
        GatewaySpec {
            auth: AuthSpec {
                jwt: Some(JwtSpec {
                    keys,
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn keys(spec: &GatewaySpec) -> Vec<(String, Option<String>)> {
        spec.auth
            .jwt
            .as_ref()
            .map(|j| {
                j.keys
                    .iter()
                    .map(|k| (k.kid.clone(), k.secret.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn replace_cmd(spec: GatewaySpec) -> Command {
        Command::ReplaceGateway { spec }
    }

    #[test]
    fn secrets_are_redacted_for_readers_only() {
        let rsa = JwtKeySpec {
            kid: "rsa1".into(),
            alg: "RS256".into(),
            public_key: Some("-----BEGIN PUBLIC KEY-----".into()),
            ..Default::default()
        };
        let spec = with_keys(vec![hs("hs1", "s3cret"), rsa.clone(), hs("hs2", "other")]);
        let shown = redact_secrets(&spec);
        assert_eq!(
            keys(&shown),
            [
                ("hs1".to_owned(), Some(REDACTED.to_owned())),
                ("rsa1".to_owned(), None),
                ("hs2".to_owned(), Some(REDACTED.to_owned())),
            ]
        );
        let text = serde_json::to_string(&shown).expect("json");
        assert!(
            !text.contains("s3cret") && !text.contains("other"),
            "{text}"
        );
        // Public keys are not secrets; the original is untouched.
        assert_eq!(shown.auth.jwt.as_ref().unwrap().keys[1], rsa);
        assert_eq!(keys(&spec)[0].1.as_deref(), Some("s3cret"));
        // Nothing to redact: unchanged.
        assert_eq!(
            redact_secrets(&GatewaySpec::default()),
            GatewaySpec::default()
        );
    }

    #[test]
    fn a_redacted_secret_written_back_keeps_the_stored_one() {
        let v = test_validator();
        let mut s = ClusterState::default();
        let stored = with_keys(vec![hs("hs1", "one"), hs("hs2", "two")]);
        let r = s.apply(&replace_cmd(stored.clone()), &mut ApplyCtx::new(&v));
        assert_eq!(r, Response::Applied);

        // What a reader got, edited (keys reordered, a new key with a real
        // secret) and written back: stored secrets are matched by kid.
        let mut edited = redact_secrets(&stored);
        if let Some(jwt) = edited.auth.jwt.as_mut() {
            jwt.keys.reverse();
            jwt.keys.push(hs("hs3", "three"));
        }
        let r = s.apply(&replace_cmd(edited), &mut ApplyCtx::new(&v));
        assert_eq!(r, Response::Applied);
        assert_eq!(
            keys(&s.gateway),
            [
                ("hs2".to_owned(), Some("two".to_owned())),
                ("hs1".to_owned(), Some("one".to_owned())),
                ("hs3".to_owned(), Some("three".to_owned())),
            ]
        );
        // A new secret sent in clear replaces the stored one.
        let rotated = with_keys(vec![hs("hs1", "uno")]);
        s.apply(&replace_cmd(rotated), &mut ApplyCtx::new(&v));
        assert_eq!(
            keys(&s.gateway),
            [("hs1".to_owned(), Some("uno".to_owned()))]
        );
    }

    #[test]
    fn a_placeholder_with_nothing_stored_is_refused() {
        let v = test_validator();
        let mut s = ClusterState::default();
        s.apply(
            &replace_cmd(with_keys(vec![hs("hs1", "one")])),
            &mut ApplyCtx::new(&v),
        );
        let before = s.clone();
        let rsa_only_kid = JwtKeySpec {
            kid: "hs1".into(),
            alg: "RS256".into(),
            public_key: Some("pem".into()),
            ..Default::default()
        };
        let next = with_keys(vec![
            hs("hs1", "kept"),
            hs("unknown", REDACTED),
            hs("also-unknown", REDACTED),
        ]);
        match s.apply(&replace_cmd(next), &mut ApplyCtx::new(&v)) {
            Response::Rejected { problems } => {
                let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
                assert_eq!(
                    paths,
                    ["auth.jwt.keys[1].secret", "auth.jwt.keys[2].secret"]
                );
                assert!(problems[0].message.contains("unknown"), "{problems:?}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        assert_eq!(s, before);

        // A stored key with that kid but no secret has nothing to keep either.
        let mut s = ClusterState::default();
        s.apply(
            &replace_cmd(with_keys(vec![rsa_only_kid])),
            &mut ApplyCtx::new(&v),
        );
        let r = s.apply(
            &replace_cmd(with_keys(vec![hs("hs1", REDACTED)])),
            &mut ApplyCtx::new(&v),
        );
        assert!(
            matches!(r, Response::Rejected { ref problems } if problems[0].path == "auth.jwt.keys[0].secret")
        );

        // A seed has nothing stored: its placeholder is refused, and the cluster
        // stays unseeded.
        let mut fresh = ClusterState::default();
        let r = fresh.apply(
            &Command::SeedGateway {
                spec: with_keys(vec![hs("hs1", REDACTED)]),
            },
            &mut ApplyCtx::new(&v),
        );
        assert!(matches!(r, Response::Rejected { .. }));
        assert!(!fresh.seeded);
    }
}
