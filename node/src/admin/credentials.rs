//! `/admin/clients` and `/admin/keys`: API clients and their keys. Secrets are
//! generated here, shown once in the answer, and only their SHA-256 enters the
//! log; every node's data plane indexes the keys by that hash.

use super::{parse_json, written, Admin, AdminError, Caller, Versioned};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;
use sluice_raft::command::{ApiClient, ApiKey, SecretHash};
use sluice_raft::Command;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/clients", web::post().to(create_client))
        .route("/keys", web::post().to(create_key))
        .route("/keys/{id}", web::delete().to(revoke_key));
}

/// 64 random hex characters after `prefix` (two v4 UUIDs' worth of randomness
/// from the OS-seeded generator).
fn random_secret(prefix: &str) -> String {
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}{a}{b}")
}

#[derive(Deserialize)]
struct NewClient {
    name: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
}

/// Creates an API client; its secret is shown once and stored only as a hash.
async fn create_client(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let new: NewClient = parse_json(&body)?;
    if new.name.trim().is_empty() {
        return Err(AdminError::BadRequest("name must not be empty".into()));
    }
    let client_id = uuid::Uuid::new_v4().to_string();
    let secret = random_secret("cs_");
    let client = ApiClient {
        id: client_id.clone(),
        name: new.name,
        roles: new.roles,
        scopes: new.scopes,
        secret_hash: SecretHash::of(secret.as_bytes()),
    };
    let version = admin.write(Command::PutClient { client }).await?;
    Ok(written(
        version,
        json!({ "client_id": client_id, "client_secret": secret, "version": version }),
    ))
}

#[derive(Deserialize)]
struct NewKey {
    client_id: String,
}

/// Issues an API key for a client; the key is shown once and stored hashed.
async fn create_key(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let new: NewKey = parse_json(&body)?;
    let id = uuid::Uuid::new_v4().to_string();
    let key = random_secret("sk_");
    let record = ApiKey {
        id: id.clone(),
        client_id: new.client_id,
        key_hash: SecretHash::of(key.as_bytes()),
        revoked: false,
    };
    let version = admin.write(Command::PutApiKey { key: record }).await?;
    Ok(written(
        version,
        json!({ "id": id, "key": key, "version": version }),
    ))
}

async fn revoke_key(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let version = admin.write(Command::RevokeApiKey { id }).await?;
    Ok(written(version, Versioned { version }))
}
