//! `/admin/signing-keys`: the cluster's OAuth signing keys. A rotation generates
//! the next key on this node and proposes it; the key it replaces keeps
//! verifying for one token lifetime (`auth.oauth.token_ttl`), so tokens issued
//! just before the rotation stay valid until they expire. Listings show what
//! identifies a key and its lifetime, never key material.

use super::{read, written, Admin, AdminError, Caller};
use crate::signing;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::json;
use sluice_raft::state::SigningKey;
use sluice_raft::Command;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/signing-keys", web::get().to(list_keys))
        .route("/signing-keys/rotate", web::post().to(rotate));
}

/// A signing key as the admin API shows it.
#[derive(Serialize)]
struct KeyView<'a> {
    kid: &'a str,
    alg: &'a str,
    /// Unix seconds.
    created_at: u64,
    retired_at: Option<u64>,
    verify_until: Option<u64>,
    /// Whether new tokens are signed with it.
    active: bool,
}

/// `GET /admin/signing-keys`: oldest first.
async fn list_keys(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let p = admin.read_state(&req).await?;
    let signing = &p.state.signing;
    let active = signing.active().map(|k| k.kid.as_str());
    let keys: Vec<KeyView<'_>> = signing
        .keys
        .iter()
        .map(|k: &SigningKey| KeyView {
            kid: &k.kid,
            alg: &k.alg,
            created_at: k.created_at,
            retired_at: k.retired_at,
            verify_until: k.verify_until,
            active: Some(k.kid.as_str()) == active,
        })
        .collect();
    Ok(read(p.version, json!({ "keys": keys })))
}

/// `POST /admin/signing-keys/rotate`: a new active key; answers its `kid`.
async fn rotate(admin: web::Data<Admin>, _: Caller) -> Result<HttpResponse, AdminError> {
    let now = signing::now_unix();
    let key = signing::generate(now).map_err(AdminError::Internal)?;
    let kid = key.kid.clone();
    // The lifetime of the tokens the retiring key may have signed, from the
    // config this node serves (the replicated one once the cluster has one).
    let verify_for_secs = admin
        .plane
        .state
        .load()
        .gateway
        .config
        .oauth
        .token_ttl
        .as_secs();
    let version = admin
        .write(Command::RotateSigningKey {
            key,
            now,
            verify_for_secs,
        })
        .await?;
    Ok(written(version, json!({ "kid": kid, "version": version })))
}
