//! JWT parsing as the node does it (node/src/auth/jwt.rs, compiled here): raw
//! bearer strings, and tokens built from fuzzed header and claims JSON and signed
//! with the configured HS256 secret, so the claims parsing behind a valid signature
//! is reached too. Every outcome is a verdict; nothing may panic.
#![no_main]

// jwt.rs reads `super::Reason`: here the crate root.
#[allow(dead_code)]
#[path = "../../node/src/auth/reason.rs"]
mod reason;
use reason::Reason;
#[allow(dead_code)]
#[path = "../../node/src/auth/jwt.rs"]
mod jwt;

use jwt::{verify, ConfigKeys};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use cluster_config::{JwtAlg, JwtConfig, JwtKey, JwtKeyMaterial};
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

fn keys() -> &'static ConfigKeys {
    static KEYS: OnceLock<ConfigKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        ConfigKeys::build(Some(&JwtConfig {
            issuer: Some("https://id.example.com".into()),
            audience: None,
            leeway: Duration::from_secs(30),
            roles_claim: "roles".into(),
            max_token_bytes: 8192,
            keys: vec![JwtKey {
                kid: "hs1".into(),
                alg: JwtAlg::HS256,
                material: JwtKeyMaterial::HmacSecret(SECRET.into()),
            }],
        }))
    })
}

fuzz_target!(|data: &[u8]| {
    let cluster = HashMap::new();
    if let Ok(raw) = std::str::from_utf8(data) {
        let _ = verify(raw, keys(), &cluster);
    }
    // header JSON, 0xff, claims JSON → a token signed with the right key.
    let Some(split) = data.iter().position(|&b| b == 0xff) else {
        return;
    };
    let (header, claims) = (&data[..split], &data[split + 1..]);
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, SECRET.as_bytes());
    let signature = ring::hmac::sign(&key, signing_input.as_bytes());
    let token = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
    if let Ok(v) = verify(&token, keys(), &cluster) {
        assert!(!v.subject.is_empty(), "a verified token has a subject");
    }
});
