//! The cluster's own signing keys, as the data plane uses them: the active one
//! signs tokens issued by `POST /oauth/token`, every key still in its
//! verification period verifies them, and their public halves are the JWKS
//! document. Built once per change of the signing keys or of the gateway config
//! (issuer, leeway and token lifetime come from there), never per request.

use super::jwt::VerifyKey;
use cluster_config::Gateway;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde_json::{json, Value};
use sluice_raft::state::signing::SigningKeys;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::error;

/// The key new tokens are signed with.
pub struct ActiveKey {
    pub kid: String,
    pub key: EncodingKey,
}

pub struct ClusterKeys {
    /// Applied index at which this was (re)built.
    pub version: u64,
    source: Arc<SigningKeys>,
    verify: HashMap<String, VerifyKey>,
    active: Option<ActiveKey>,
    /// `GET /.well-known/jwks.json`, rendered once.
    jwks: Value,
    /// `auth.oauth.issuer`: the `iss` of issued tokens.
    pub issuer: String,
    /// `auth.oauth.token_ttl`.
    pub token_ttl: Duration,
}

impl ClusterKeys {
    pub fn build(source: Arc<SigningKeys>, gateway: &Gateway, version: u64) -> ClusterKeys {
        let issuer = gateway.oauth.issuer.clone();
        let leeway = gateway
            .jwt
            .as_ref()
            .map_or(Duration::from_secs(30), |j| j.leeway);
        let mut verify = HashMap::new();
        let mut jwks = Vec::new();
        for k in &source.keys {
            match DecodingKey::from_ec_components(&k.public_x, &k.public_y) {
                Ok(key) => {
                    let vk =
                        VerifyKey::new(Algorithm::ES256, key, Some(&issuer), None, leeway, true);
                    verify.insert(k.kid.clone(), vk);
                    jwks.push(json!({
                        "kty": "EC", "crv": "P-256", "x": k.public_x, "y": k.public_y,
                        "kid": k.kid, "alg": "ES256", "use": "sig",
                    }));
                }
                Err(e) => error!(kid = %k.kid, error = %e, "cluster signing key does not load"),
            }
        }
        let active = source
            .keys
            .iter()
            .rev()
            .find(|k| k.retired_at.is_none())
            .map(|k| ActiveKey {
                kid: k.kid.clone(),
                key: EncodingKey::from_ec_der(&k.private_pkcs8),
            });
        ClusterKeys {
            version,
            source,
            verify,
            active,
            jwks: json!({ "keys": jwks }),
            issuer,
            token_ttl: gateway.oauth.token_ttl,
        }
    }

    /// Whether this was built from exactly `source`.
    pub fn built_from(&self, source: &Arc<SigningKeys>) -> bool {
        Arc::ptr_eq(&self.source, source) || *self.source == **source
    }

    pub fn verify_keys(&self) -> &HashMap<String, VerifyKey> {
        &self.verify
    }

    pub fn active(&self) -> Option<&ActiveKey> {
        self.active.as_ref()
    }

    pub fn jwks(&self) -> &Value {
        &self.jwks
    }

    pub fn len(&self) -> usize {
        self.source.keys.len()
    }
}
