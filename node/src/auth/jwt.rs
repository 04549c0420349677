//! JWT verification: the keys a node accepts tokens from, parsed once per config
//! version (never per request), and the checks every token goes through.
//!
//! Two sources of keys share one lookup by `kid`: the keys in `auth.jwt.keys`
//! (RS256, ES256, HS256; tokens checked against `auth.jwt.issuer` / `audience`)
//! and the cluster's own signing keys (ES256, tokens issued by `POST /oauth/token`,
//! checked against `auth.oauth.issuer`). A token's header names its key; the key
//! decides the one algorithm accepted for it, so `alg: none` and algorithm
//! confusion (an RSA public key used as an HMAC secret) cannot verify.

use super::Reason;
use cluster_config::{JwtAlg, JwtConfig, JwtKeyMaterial};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::time::Duration;
use tracing::error;

/// Default `auth.jwt.max_token_bytes`.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;

/// One key tokens may be signed with.
pub struct VerifyKey {
    key: DecodingKey,
    /// Exactly one algorithm: the key's.
    validation: Validation,
    /// Issued by this cluster (`POST /oauth/token`): its client must still exist.
    pub cluster_issued: bool,
}

impl VerifyKey {
    pub fn new(
        alg: Algorithm,
        key: DecodingKey,
        issuer: Option<&str>,
        audience: Option<&str>,
        leeway: Duration,
        cluster_issued: bool,
    ) -> VerifyKey {
        let mut validation = Validation::new(alg);
        validation.leeway = leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // A configured issuer or audience must be present, not merely not wrong.
        let mut required = vec!["exp"];
        match issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // jsonwebtoken refuses a token carrying `aud` unless told what to expect.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        VerifyKey {
            key,
            validation,
            cluster_issued,
        }
    }
}

/// The keys of `auth.jwt.keys`, by `kid`, with the settings every token is read
/// with. A key whose material does not parse is left out (and logged): tokens
/// naming it are refused as `unknown_key`.
pub struct ConfigKeys {
    pub keys: HashMap<String, VerifyKey>,
    pub max_token_bytes: usize,
    pub roles_claim: String,
}

impl ConfigKeys {
    pub fn build(jwt: Option<&JwtConfig>) -> ConfigKeys {
        let Some(jwt) = jwt else {
            return ConfigKeys {
                keys: HashMap::new(),
                max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
                roles_claim: "roles".into(),
            };
        };
        let mut keys = HashMap::new();
        for k in &jwt.keys {
            let parsed = match (&k.material, k.alg) {
                (JwtKeyMaterial::HmacSecret(s), _) => Ok(DecodingKey::from_secret(s.as_bytes())),
                (JwtKeyMaterial::RsaPublicPem(pem), _) => DecodingKey::from_rsa_pem(pem.as_bytes()),
                (JwtKeyMaterial::EcPublicPem(pem), _) => DecodingKey::from_ec_pem(pem.as_bytes()),
            };
            match parsed {
                Ok(key) => {
                    let vk = VerifyKey::new(
                        algorithm(k.alg),
                        key,
                        jwt.issuer.as_deref(),
                        jwt.audience.as_deref(),
                        jwt.leeway,
                        false,
                    );
                    keys.insert(k.kid.clone(), vk);
                }
                Err(e) => {
                    error!(kid = %k.kid, error = %e, "auth.jwt key does not load; tokens naming it are refused")
                }
            }
        }
        ConfigKeys {
            keys,
            max_token_bytes: jwt.max_token_bytes,
            roles_claim: jwt.roles_claim.clone(),
        }
    }
}

pub fn algorithm(alg: JwtAlg) -> Algorithm {
    match alg {
        JwtAlg::RS256 => Algorithm::RS256,
        JwtAlg::RS384 => Algorithm::RS384,
        JwtAlg::RS512 => Algorithm::RS512,
        JwtAlg::ES256 => Algorithm::ES256,
        JwtAlg::HS256 => Algorithm::HS256,
        JwtAlg::HS384 => Algorithm::HS384,
        JwtAlg::HS512 => Algorithm::HS512,
    }
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub subject: String,
    pub roles: Vec<String>,
    pub client_id: Option<String>,
    pub cluster_issued: bool,
    /// `exp` plus the leeway: when a cached verdict stops being good.
    pub good_until: u64,
}

/// Verified tokens per worker thread, so a client that sends the same token again
/// does not pay for another signature check (RS256 verification costs more than
/// proxying the request). Keyed by the token itself; an entry is used only while
/// its token is unexpired and the keys it was checked with are still the ones in
/// force (the cache empties when they change). Bounded: cleared when full.
struct VerifiedCache {
    /// The versions (applied indexes) of the two key sets the entries were
    /// checked with; never pointers, which a new key set could reuse.
    keys_version: (u64, u64),
    entries: HashMap<Box<str>, Verified>,
}

/// Entries one worker keeps before starting afresh.
const CACHE_ENTRIES: usize = 20_000;

thread_local! {
    static CACHE: std::cell::RefCell<VerifiedCache> = std::cell::RefCell::new(VerifiedCache {
        keys_version: (0, 0),
        entries: HashMap::new(),
    });
}

/// Whether [`verify_cached`] uses its cache (`node.jwt_cache`, default on).
static CACHE_ON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

pub fn set_cache(on: bool) {
    CACHE_ON.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// [`verify`], answered from this thread's cache when the same token was verified
/// before with the same keys (`keys_version`: the versions the configured and the
/// cluster key sets were built at) and has not expired since.
pub fn verify_cached(
    token: &str,
    config: &ConfigKeys,
    cluster: &HashMap<String, VerifyKey>,
    keys_version: (u64, u64),
) -> Result<Verified, Reason> {
    if !CACHE_ON.load(std::sync::atomic::Ordering::Relaxed) {
        return verify(token, config, cluster);
    }
    let now = jsonwebtoken::get_current_timestamp();
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.keys_version != keys_version {
            c.entries.clear();
            c.keys_version = keys_version;
        }
        c.entries.get(token).filter(|v| now < v.good_until).cloned()
    });
    if let Some(v) = hit {
        return Ok(v);
    }
    let verified = verify(token, config, cluster)?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.entries.len() >= CACHE_ENTRIES {
            c.entries.clear();
        }
        c.entries.insert(token.into(), verified.clone());
    });
    Ok(verified)
}

/// Verifies `token` against whichever of `config` or `cluster` holds its `kid`.
pub fn verify(
    token: &str,
    config: &ConfigKeys,
    cluster: &HashMap<String, VerifyKey>,
) -> Result<Verified, Reason> {
    if token.len() > config.max_token_bytes {
        return Err(Reason::Malformed);
    }
    // Unknown algorithms, `none` included, fail here: jsonwebtoken has no such
    // variant to parse them into.
    let header = jsonwebtoken::decode_header(token).map_err(|_| Reason::Malformed)?;
    let kid = header.kid.ok_or(Reason::UnknownKey)?;
    let key = config
        .keys
        .get(&kid)
        .or_else(|| cluster.get(&kid))
        .ok_or(Reason::UnknownKey)?;
    if header.alg != key.validation.algorithms[0] {
        return Err(Reason::BadSignature);
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &key.validation)
        .map_err(|e| reason_of(e.kind()))?;
    let claims = data.claims;
    let subject = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(Reason::BadClaims),
    };
    let client_id = match claims.get("client_id") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => None,
    };
    let roles = roles_of(&claims, &config.roles_claim);
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    Ok(Verified {
        subject,
        roles,
        client_id,
        cluster_issued: key.cluster_issued,
        good_until: exp.saturating_add(key.validation.leeway),
    })
}

/// Roles from `claim` (an array of strings, or one space-separated string), else
/// from `scope`.
fn roles_of(claims: &Map<String, Value>, claim: &str) -> Vec<String> {
    let read = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
            ),
            Value::String(s) => Some(s.split_whitespace().map(str::to_owned).collect()),
            _ => None,
        }
    };
    claims
        .get(claim)
        .and_then(read)
        .or_else(|| claims.get("scope").and_then(read))
        .unwrap_or_default()
}

fn reason_of(kind: &ErrorKind) -> Reason {
    match kind {
        ErrorKind::ExpiredSignature => Reason::Expired,
        ErrorKind::ImmatureSignature => Reason::NotYetValid,
        ErrorKind::InvalidSignature | ErrorKind::InvalidAlgorithm => Reason::BadSignature,
        ErrorKind::InvalidIssuer
        | ErrorKind::InvalidAudience
        | ErrorKind::InvalidSubject
        | ErrorKind::MissingRequiredClaim(_) => Reason::BadClaims,
        _ => Reason::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster_config::JwtKey;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &[u8] = b"an hs256 secret of decent length";

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn keys(roles_claim: &str) -> ConfigKeys {
        ConfigKeys::build(Some(&JwtConfig {
            issuer: Some("https://id.example.com".into()),
            audience: Some("sluice".into()),
            leeway: Duration::from_secs(5),
            keys: vec![JwtKey {
                kid: "hs1".into(),
                alg: JwtAlg::HS256,
                material: JwtKeyMaterial::HmacSecret(String::from_utf8_lossy(SECRET).into()),
            }],
            roles_claim: roles_claim.into(),
            max_token_bytes: 2048,
        }))
    }

    fn token(kid: Option<&str>, claims: Value) -> String {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = kid.map(str::to_owned);
        encode(&h, &claims, &EncodingKey::from_secret(SECRET)).expect("sign")
    }

    fn good_claims() -> Value {
        json!({"sub": "alice", "iss": "https://id.example.com", "aud": "sluice",
               "exp": now() + 600, "roles": ["admin", "reader"]})
    }

    fn check(token: &str) -> Result<Verified, Reason> {
        verify(token, &keys("roles"), &HashMap::new())
    }

    #[test]
    fn a_valid_token_yields_its_subject_and_roles() {
        let v = check(&token(Some("hs1"), good_claims())).expect("valid");
        assert_eq!(v.subject, "alice");
        assert_eq!(v.roles, ["admin", "reader"]);
        assert!(!v.cluster_issued);
        // Roles as a space-separated string, and `scope` as the fallback.
        let mut c = good_claims();
        c["roles"] = json!("a b");
        assert_eq!(
            check(&token(Some("hs1"), c)).map(|v| v.roles),
            Ok(vec!["a".into(), "b".into()])
        );
        let mut c = good_claims();
        c.as_object_mut().map(|m| m.remove("roles"));
        c["scope"] = json!("read write");
        assert_eq!(
            check(&token(Some("hs1"), c)).map(|v| v.roles),
            Ok(vec!["read".into(), "write".into()])
        );
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let with = |k: &str, v: Value| {
            let mut c = good_claims();
            c[k] = v;
            token(Some("hs1"), c)
        };
        assert_eq!(
            check(&with("exp", json!(now() - 60))).err(),
            Some(Reason::Expired)
        );
        assert_eq!(
            check(&with("nbf", json!(now() + 60))).err(),
            Some(Reason::NotYetValid)
        );
        assert_eq!(
            check(&with("iss", json!("https://evil"))).err(),
            Some(Reason::BadClaims)
        );
        assert_eq!(
            check(&with("aud", json!("other"))).err(),
            Some(Reason::BadClaims)
        );
        assert_eq!(
            check(&with("sub", json!(""))).err(),
            Some(Reason::BadClaims)
        );
        assert_eq!(
            check(&token(None, good_claims())).err(),
            Some(Reason::UnknownKey)
        );
        assert_eq!(
            check(&token(Some("nope"), good_claims())).err(),
            Some(Reason::UnknownKey)
        );
        assert_eq!(check("garbage").err(), Some(Reason::Malformed));
        let big = with("pad", json!("x".repeat(4096)));
        assert_eq!(check(&big).err(), Some(Reason::Malformed));
        // Tampered signature and tampered payload.
        let good = token(Some("hs1"), good_claims());
        let (head_payload, sig) = good.rsplit_once('.').expect("three parts");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        assert_eq!(
            check(&format!("{head_payload}.{flipped}{}", &sig[1..])).err(),
            Some(Reason::BadSignature)
        );
        let forged = token(Some("hs1"), json!({"sub": "mallory"}));
        let forged_payload = forged.split('.').nth(1).expect("payload");
        let head = good.split('.').next().expect("header");
        assert_eq!(
            check(&format!("{head}.{forged_payload}.{sig}")).err(),
            Some(Reason::BadSignature)
        );
        // `alg: none`, unsigned.
        let b64 = |v: Value| {
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                v.to_string(),
            )
        };
        let none = format!(
            "{}.{}.",
            b64(json!({"alg": "none", "kid": "hs1", "typ": "JWT"})),
            b64(good_claims())
        );
        assert_eq!(check(&none).err(), Some(Reason::Malformed));
    }

    #[test]
    fn a_token_must_use_its_keys_algorithm() {
        // HS384 signed with the HS256 key's secret: the kid's algorithm is HS256.
        let mut h = Header::new(Algorithm::HS384);
        h.kid = Some("hs1".into());
        let t = encode(&h, &good_claims(), &EncodingKey::from_secret(SECRET)).expect("sign");
        assert_eq!(check(&t).err(), Some(Reason::BadSignature));
    }

    #[test]
    fn a_cached_verdict_dies_with_the_keys_it_was_checked_with() {
        let t = token(Some("hs1"), good_claims());
        let none = HashMap::new();
        let with_key = keys("roles");
        assert!(verify_cached(&t, &with_key, &none, (1, 1)).is_ok());
        // Same versions: answered from the cache even by an empty key set.
        let without_key = ConfigKeys::build(None);
        assert!(verify_cached(&t, &without_key, &none, (1, 1)).is_ok());
        // The key set changed (a new version): the token is checked again.
        assert_eq!(
            verify_cached(&t, &without_key, &none, (2, 1)).err(),
            Some(Reason::UnknownKey)
        );
    }
}
