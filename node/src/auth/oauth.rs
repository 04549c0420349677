//! `POST /oauth/token` (RFC 6749 §4.4, client credentials) and
//! `GET /.well-known/jwks.json` on the data port.
//!
//! A client authenticates with HTTP Basic or with `client_id` / `client_secret`
//! form fields (not both), its secret checked against the replicated SHA-256 in
//! constant time. The token is an ES256 JWT signed with the cluster's active key,
//! so every node verifies what any node issued. Requests are limited per client
//! (`auth.oauth.token_endpoint_limit`) by the node's rate limiter, under the
//! reserved policy `oauth-token` (cluster-wide with the cluster limiter), and
//! failed client authentications per client address on this node
//! ([`super::limiter`]). Errors are RFC 6749 §5.2 JSON.

use crate::body::{json as json_response, Response};
use crate::dataplane::DataPlane;
use crate::listener::ClientRequest;
use crate::phases::RequestHead;
use base64::Engine;
use cluster_config::Quota;
use http::{header, HeaderValue, StatusCode};
use jsonwebtoken::{Algorithm, Header};
use serde_json::json;
use sluice_actors::limiter::Verdict;
use std::collections::HashMap;
use std::time::Duration;
use tracing::{info, warn};

/// Failed client authentications one client address (the peer, or what a trusted
/// proxy forwarded) may make per minute on a node before the endpoint answers
/// 429 (password guessing).
const FAILED_LOGINS: Quota = Quota {
    count: 20,
    per: Duration::from_secs(60),
};

/// An RFC 6749 §5.2 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    no_store(json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    ))
}

/// Token endpoint answers are not cached (RFC 6749 §5.1).
fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

fn too_many(retry_after: Duration, description: &str) -> Response {
    let mut r = oauth_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", description);
    let secs = retry_after.as_millis().div_ceil(1000).max(1);
    if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Client credentials from `Authorization: Basic` (each part form-decoded, RFC
/// 6749 §2.3.1) or from the form; `Err` names what is wrong with them.
fn client_credentials(
    req: &ClientRequest,
    form: &HashMap<String, String>,
) -> Result<(String, String, bool), &'static str> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, b64)| b64.trim());
    let in_form = form.contains_key("client_id") || form.contains_key("client_secret");
    match basic {
        Some(_) if in_form => Err("use one client authentication method, not two"),
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| "malformed Basic credentials")?;
            let text = String::from_utf8(raw).map_err(|_| "malformed Basic credentials")?;
            let (id, secret) = text.split_once(':').ok_or("malformed Basic credentials")?;
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Ok((decode(id), decode(secret), true))
        }
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => Ok((id.clone(), secret.clone(), false)),
            _ => {
                Err("client authentication is required (HTTP Basic or client_id and client_secret)")
            }
        },
    }
}

pub async fn token(req: &ClientRequest, body: bytes::Bytes, plane: &DataPlane) -> Response {
    let state = plane.state.load_full();
    let head = RequestHead {
        method: req.method(),
        path: req.path(),
        headers: req.headers(),
        peer: req.peer_addr().map(|a| a.ip()),
        trusted_proxies: &plane.trusted_proxies,
    };
    let ip = head
        .client_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    if let Some(wait) = plane.failed_logins.exhausted(&ip, FAILED_LOGINS) {
        return too_many(
            wait,
            "too many failed client authentications from this address",
        );
    }
    // Form body (RFC 6749 §4.4.2); a parameter sent twice is a malformed request.
    let mut form = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(&body) {
        if form.insert(k.into_owned(), v.into_owned()).is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "a parameter is repeated",
            );
        }
    }
    let (client_id, secret, basic) = match client_credentials(req, &form) {
        Ok(c) => c,
        Err(why) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", why),
    };
    let client = state
        .credentials
        .client(&client_id)
        .filter(|c| c.secret_hash.matches(secret.as_bytes()));
    let Some(client) = client else {
        let _ = plane.failed_logins.admit(&ip, FAILED_LOGINS);
        warn!(%ip, client_id = %client_id, "token request refused: bad client credentials");
        let mut r = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        );
        if basic {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Basic realm=\"sluice\""),
            );
        }
        return r;
    };
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    }
    if let Some(policy) = &state.gateway.token_policy {
        let key = crate::limits::token_endpoint_key(&client_id);
        if let Verdict::Refused { retry_after, .. } = plane.limiters.acquire(policy, &key) {
            return too_many(
                retry_after,
                "token requests for this client are over the limit",
            );
        }
    }
    let scopes: Vec<String> = match form.get("scope") {
        Some(requested) => {
            let requested: Vec<String> = requested.split_whitespace().map(str::to_owned).collect();
            if let Some(bad) = requested.iter().find(|s| !client.scopes.contains(s)) {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    &format!("scope {bad:?} is not granted to this client"),
                );
            }
            requested
        }
        None => client.scopes.clone(),
    };
    let keys = &state.cluster_keys;
    let Some(active) = keys.active() else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the cluster has no signing key yet",
        );
    };
    let now = crate::signing::now_unix();
    let ttl = keys.token_ttl.as_secs();
    let scope = scopes.join(" ");
    let claims = json!({
        "iss": keys.issuer,
        "sub": client_id,
        "client_id": client_id,
        "scope": scope,
        "roles": client.roles,
        "iat": now,
        "exp": now + ttl,
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    let mut head = Header::new(Algorithm::ES256);
    head.kid = Some(active.kid.clone());
    match jsonwebtoken::encode(&head, &claims, &active.key) {
        Ok(access_token) => {
            info!(client_id = %client_id, kid = %active.kid, "token issued");
            let mut body = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": ttl,
            });
            if !scope.is_empty() {
                body["scope"] = json!(scope);
            }
            no_store(json_response(StatusCode::OK, &body))
        }
        Err(e) => {
            warn!(error = %e, "cannot sign a token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "cannot sign the token",
            )
        }
    }
}

pub fn jwks(plane: &DataPlane) -> Response {
    let state = plane.state.load();
    let mut r = json_response(StatusCode::OK, &state.cluster_keys.jwks());
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    r
}
