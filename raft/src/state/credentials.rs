//! The credentials domain: API clients, their API keys and admin tokens. Only
//! hashes are stored ([`crate::command::SecretHash`]); the data plane builds its
//! by-hash key index from this.
//!
//! Each change copies the maps only when it will succeed (`Arc::make_mut` after
//! the checks), so a refused command costs nothing and leaves the published `Arc`
//! untouched.

use super::{not_found, rejected};
use crate::command::{AdminToken, ApiClient, ApiKey, Response};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Maps are `BTreeMap` so iteration order, and therefore snapshots and messages,
/// are identical on every node. Field order is part of the snapshot encoding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Credentials {
    /// By client id.
    pub clients: BTreeMap<String, ApiClient>,
    /// By key id (the data plane builds its own by-hash index from this).
    pub api_keys: BTreeMap<String, ApiKey>,
    /// By token id.
    pub admin_tokens: BTreeMap<String, AdminToken>,
}

pub fn put_client(c: &mut Arc<Credentials>, client: &ApiClient) -> Response {
    if client.id.is_empty() {
        return rejected("client.id", "must not be empty");
    }
    Arc::make_mut(c)
        .clients
        .insert(client.id.clone(), client.clone());
    Response::Applied
}

/// Removes the client and every API key that belongs to it: a key without its
/// client could never authenticate anyone useful.
pub fn delete_client(c: &mut Arc<Credentials>, id: &str) -> Response {
    if !c.clients.contains_key(id) {
        return not_found("client", id);
    }
    let c = Arc::make_mut(c);
    c.clients.remove(id);
    c.api_keys.retain(|_, k| k.client_id != id);
    Response::Applied
}

/// Insert or replace a key by id; its client must exist and its hash be unique.
pub fn put_api_key(c: &mut Arc<Credentials>, key: &ApiKey) -> Response {
    if key.id.is_empty() {
        return rejected("key.id", "must not be empty");
    }
    if !c.clients.contains_key(&key.client_id) {
        return rejected(
            "key.client_id",
            format!("unknown client `{}`", key.client_id),
        );
    }
    if let Some(other) = c
        .api_keys
        .values()
        .find(|k| k.key_hash == key.key_hash && k.id != key.id)
    {
        // The data plane indexes keys by hash; two ids for one hash would make
        // the lookup ambiguous.
        return rejected(
            "key.key_hash",
            format!("already used by key `{}`", other.id),
        );
    }
    Arc::make_mut(c)
        .api_keys
        .insert(key.id.clone(), key.clone());
    Response::Applied
}

/// Revoked keys are kept (so they can be listed) but never accepted.
pub fn revoke_api_key(c: &mut Arc<Credentials>, id: &str) -> Response {
    match c.api_keys.get(id) {
        None => not_found("api_key", id),
        Some(k) if k.revoked => Response::Applied,
        Some(_) => {
            if let Some(k) = Arc::make_mut(c).api_keys.get_mut(id) {
                k.revoked = true;
            }
            Response::Applied
        }
    }
}

pub fn delete_api_key(c: &mut Arc<Credentials>, id: &str) -> Response {
    if !c.api_keys.contains_key(id) {
        return not_found("api_key", id);
    }
    Arc::make_mut(c).api_keys.remove(id);
    Response::Applied
}

pub fn put_admin_token(c: &mut Arc<Credentials>, token: &AdminToken) -> Response {
    if token.id.is_empty() {
        return rejected("token.id", "must not be empty");
    }
    Arc::make_mut(c)
        .admin_tokens
        .insert(token.id.clone(), token.clone());
    Response::Applied
}

pub fn delete_admin_token(c: &mut Arc<Credentials>, id: &str) -> Response {
    if !c.admin_tokens.contains_key(id) {
        return not_found("admin_token", id);
    }
    Arc::make_mut(c).admin_tokens.remove(id);
    Response::Applied
}
