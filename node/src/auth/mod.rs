//! Who is calling: the authenticate step of the request lifecycle, free of actix
//! types like the other decisions in `phases.rs`, and the OAuth2 token endpoint
//! ([`oauth`]) that issues the cluster's own tokens.
//!
//! A route's `auth` policy decides which credentials count: `none` (public),
//! `jwt` (`Authorization: Bearer <JWT>`, from a configured key or issued by the
//! cluster), `api_key` (`X-API-Key`) or `any` (either; the default). A credential
//! that is presented must be valid, even when another valid one came along. A
//! missing or bad credential is 401, a valid one without a required role 403.
//! Every refusal carries a [`Reason`] from a closed set, counted in
//! `gateway_auth_failures_total{route,reason}`.
//!
//! All lookups are in the data-plane state: keys are parsed once per config
//! version ([`jwt::ConfigKeys`], [`cluster::ClusterKeys`]) and API keys are one
//! hash probe in the credential index. Nothing here waits on Raft or a peer.

pub mod cluster;
pub mod jwt;
pub mod limiter;
pub mod oauth;

use crate::dataplane::DataPlaneState;
use crate::errors::{GatewayError, Kind, Source};
use crate::phases::{Identity, RequestHead};
use cluster_config::{AuthMode, Route};
use http::header;

pub const X_API_KEY: &str = "x-api-key";

mod reason;
pub use reason::Reason;

/// Which credential a failure was about: decides the `WWW-Authenticate` detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Nothing,
    Token,
    ApiKey,
}

fn refuse(reason: Reason, presented: Presented) -> GatewayError {
    let (kind, challenge) = match (reason, presented) {
        (Reason::Forbidden, _) => (Kind::Forbidden, None),
        (_, Presented::Token) => (
            Kind::Unauthorized,
            Some(format!(
                "Bearer error=\"invalid_token\", error_description=\"{}\"",
                reason.describe()
            )),
        ),
        _ => (Kind::Unauthorized, Some("Bearer".to_owned())),
    };
    let mut e = GatewayError::new(kind, Source::Client, reason.describe());
    e.reason = Some(reason.as_str());
    match challenge {
        Some(c) => e.header(header::WWW_AUTHENTICATE, c),
        None => e,
    }
}

/// The bearer token of `Authorization: Bearer <token>` (scheme case-insensitive).
fn bearer<'h>(head: &RequestHead<'h>) -> Option<&'h str> {
    bearer_token(head.headers.get_str("authorization")?)
}

/// The token of an `Authorization` value `Bearer <token>` (scheme
/// case-insensitive, RFC 9110 §11.1); the admin API reads its tokens this way too.
pub fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Step 2 of the lifecycle: the caller's identity under `route`'s policy, or the
/// refusal. `Ok(None)` only on a public route.
pub fn authenticate(
    state: &DataPlaneState,
    route: &Route,
    head: &RequestHead<'_>,
) -> Result<Option<Identity>, GatewayError> {
    let (take_token, take_key) = match route.auth {
        AuthMode::None => return Ok(None),
        AuthMode::Jwt => (true, false),
        AuthMode::ApiKey => (false, true),
        AuthMode::Any => (true, true),
    };
    let token = if take_token { bearer(head) } else { None };
    let key = if take_key {
        head.headers.get_str(X_API_KEY)
    } else {
        None
    };
    // Every credential presented is checked: a bad one refuses the request even
    // when another one is good.
    let from_token = token
        .map(|t| token_identity(state, t).map_err(|r| refuse(r, Presented::Token)))
        .transpose()?;
    let from_key = key
        .map(|k| key_identity(state, k).map_err(|r| refuse(r, Presented::ApiKey)))
        .transpose()?;
    let identity = from_token
        .or(from_key)
        .ok_or_else(|| refuse(Reason::Missing, Presented::Nothing))?;
    if !route.roles.is_empty() && !identity.roles.iter().any(|r| route.roles.contains(r)) {
        return Err(refuse(Reason::Forbidden, Presented::Nothing));
    }
    Ok(Some(identity))
}

fn token_identity(state: &DataPlaneState, token: &str) -> Result<Identity, Reason> {
    let keys_version = (state.gateway.version, state.cluster_keys.version);
    let v = jwt::verify_cached(
        token,
        &state.gateway.auth_keys,
        state.cluster_keys.verify_keys(),
        keys_version,
    )?;
    // A token the cluster issued is only as good as its client: deleting the
    // client stops its tokens at once, as Kong does.
    if v.cluster_issued {
        let client = v.client_id.as_deref().unwrap_or(&v.subject);
        if state.credentials.client(client).is_none() {
            return Err(Reason::Revoked);
        }
    }
    Ok(Identity {
        user_id: v.subject,
        roles: v.roles,
        client_id: v.client_id,
    })
}

fn key_identity(state: &DataPlaneState, key: &str) -> Result<Identity, Reason> {
    let entry = state.credentials.api_key(key.as_bytes()).ok_or_else(|| {
        if state.credentials.is_revoked(key.as_bytes()) {
            Reason::Revoked
        } else {
            Reason::UnknownKey
        }
    })?;
    let client = state
        .credentials
        .client(&entry.client_id)
        .ok_or(Reason::Revoked)?;
    Ok(Identity {
        user_id: entry.client_id.clone(),
        roles: client.roles.clone(),
        client_id: Some(entry.client_id.clone()),
    })
}
