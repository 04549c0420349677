//! `/admin/clients` and `/admin/keys`: API clients and their keys. Secrets are
//! generated here, shown once in the answer, and only their SHA-256 enters the
//! log; every node's data plane indexes the keys by that hash. Reads show what
//! identifies a client or a key, never a secret nor a whole hash.

use super::{parse_json, read, written, Admin, AdminError, Caller};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sluice_raft::command::{ApiClient, ApiKey, SecretHash};
use sluice_raft::Command;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/clients", web::post().to(create_client))
        .route("/clients", web::get().to(list_clients))
        .route("/clients/{id}", web::get().to(get_client))
        .route("/clients/{id}", web::delete().to(delete_client))
        .route("/keys", web::post().to(create_key))
        .route("/keys", web::get().to(list_keys))
        .route("/keys/{id}", web::delete().to(revoke_key));
}

/// A client as the admin API shows it: everything but the secret's hash.
#[derive(Serialize)]
struct ClientView<'a> {
    id: &'a str,
    name: &'a str,
    roles: &'a [String],
    scopes: &'a [String],
}

impl<'a> From<&'a ApiClient> for ClientView<'a> {
    fn from(c: &'a ApiClient) -> ClientView<'a> {
        ClientView {
            id: &c.id,
            name: &c.name,
            roles: &c.roles,
            scopes: &c.scopes,
        }
    }
}

/// How many hex characters of a key's hash a listing shows.
const HASH_PREFIX_LEN: usize = 8;

/// A key as the admin API shows it. Keys are stored only as SHA-256, so there is
/// no prefix of the key itself to show: `hash_prefix` (the first 8 hex characters
/// of the hash) tells keys apart, and an operator holding a key can match it
/// with `printf %s "$KEY" | sha256sum`.
#[derive(Serialize)]
struct KeyView<'a> {
    id: &'a str,
    client_id: &'a str,
    revoked: bool,
    hash_prefix: &'a str,
}

impl<'a> From<&'a ApiKey> for KeyView<'a> {
    fn from(k: &'a ApiKey) -> KeyView<'a> {
        let hex = k.key_hash.as_hex();
        KeyView {
            id: &k.id,
            client_id: &k.client_id,
            revoked: k.revoked,
            hash_prefix: &hex[..HASH_PREFIX_LEN.min(hex.len())],
        }
    }
}

/// `GET /admin/clients`: every client, by id.
async fn list_clients(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let p = admin.read_state(&req).await?;
    let clients: Vec<ClientView<'_>> = p
        .state
        .credentials
        .clients
        .values()
        .map(Into::into)
        .collect();
    Ok(read(p.version, json!({ "clients": clients })))
}

/// `GET /admin/clients/{id}`: one client; 404 when there is none.
async fn get_client(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    let p = admin.read_state(&req).await?;
    match p.state.credentials.clients.get(&id) {
        Some(c) => Ok(read(p.version, ClientView::from(c))),
        None => Err(AdminError::NotFound(format!("no client {id:?}"))),
    }
}

/// `DELETE /admin/clients/{id}`: the client and all its keys go in one command,
/// so no node ever holds a key whose client is gone.
async fn delete_client(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = path.into_inner();
    admin.write_versioned(Command::DeleteClient { id }).await
}

#[derive(Deserialize)]
struct KeysQuery {
    client_id: Option<String>,
}

/// `GET /admin/keys[?client_id=]`: keys, revoked ones included, optionally of
/// one client (a client with no keys, or none at all, lists nothing).
async fn list_keys(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    let query = web::Query::<KeysQuery>::from_query(req.query_string())
        .map_err(|e| AdminError::BadRequest(format!("invalid query: {e}")))?;
    let p = admin.read_state(&req).await?;
    let keys: Vec<KeyView<'_>> = p
        .state
        .credentials
        .api_keys
        .values()
        .filter(|k| match &query.client_id {
            Some(client) => *client == k.client_id,
            None => true,
        })
        .map(Into::into)
        .collect();
    Ok(read(p.version, json!({ "keys": keys })))
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
    cluster_config::validate::check_id(&new.name)
        .map_err(|m| AdminError::BadRequest(format!("name {m}")))?;
    // Roles and scopes travel in `X-User-Roles` and tokens: short, printable,
    // no commas (the header's separator) or spaces (the scope separator).
    for (what, list) in [("roles", &new.roles), ("scopes", &new.scopes)] {
        if list.len() > 64 {
            return Err(AdminError::BadRequest(format!("at most 64 {what}")));
        }
        if let Some(bad) = list.iter().find(|r| {
            r.is_empty()
                || r.len() > 128
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
        }) {
            return Err(AdminError::BadRequest(format!(
                "{what}: {bad:?} must be 1 to 128 printable ASCII characters without spaces, commas or quotes"
            )));
        }
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
    admin.write_versioned(Command::RevokeApiKey { id }).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_never_carry_secrets_or_whole_hashes() {
        let client = ApiClient {
            id: "c1".into(),
            name: "one".into(),
            roles: vec!["admin".into()],
            scopes: vec!["read".into()],
            secret_hash: SecretHash::of(b"client-secret"),
        };
        let shown = serde_json::to_value(ClientView::from(&client)).expect("json");
        assert_eq!(
            shown,
            json!({"id": "c1", "name": "one", "roles": ["admin"], "scopes": ["read"]})
        );
        let key = ApiKey {
            id: "k1".into(),
            client_id: "c1".into(),
            key_hash: SecretHash::of(b"sk_key"),
            revoked: true,
        };
        let hex = key.key_hash.as_hex().to_owned();
        let shown = serde_json::to_value(KeyView::from(&key)).expect("json");
        assert_eq!(
            shown,
            json!({"id": "k1", "client_id": "c1", "revoked": true, "hash_prefix": &hex[..8]})
        );
        assert!(!shown.to_string().contains(&hex));
    }
}
