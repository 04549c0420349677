//! Generating the cluster's OAuth signing keys. A key is made here, on the node
//! that proposes it (randomness never runs inside the state machine's apply),
//! and reaches every node through the Raft log as a [`SigningKey`]: founding
//! nodes seed one at first start (`cluster.rs`), `POST /admin/signing-keys/rotate`
//! makes the next. Signing and verifying with it belong to the auth module.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use sluice_raft::state::SigningKey;
use std::time::{SystemTime, UNIX_EPOCH};

/// The JWS algorithm of the keys made here (ECDSA P-256 with SHA-256).
pub const ALG: &str = "ES256";

/// Seconds since the Unix epoch by this node's clock (0 if the clock is before
/// 1970): the time stamped into signing-key commands.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh ES256 key pair created at `now` (Unix seconds): the private key as
/// PKCS#8 DER, the public point's coordinates base64url-encoded as a JWK has
/// them, and a random `kid` (8 random bytes, base64url: 11 characters).
pub fn generate(now: u64) -> Result<SigningKey, String> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| "cannot generate an ES256 key pair".to_owned())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| "the generated ES256 key does not load".to_owned())?;
    // An uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    let (x, y) = match point {
        [0x04, xy @ ..] if xy.len() == 64 => xy.split_at(32),
        _ => {
            return Err(format!(
                "unexpected public key shape ({} bytes)",
                point.len()
            ))
        }
    };
    let mut id = [0u8; 8];
    rng.fill(&mut id)
        .map_err(|_| "the OS random source failed".to_owned())?;
    Ok(SigningKey {
        kid: URL_SAFE_NO_PAD.encode(id),
        alg: ALG.to_owned(),
        private_pkcs8: pkcs8.as_ref().to_vec(),
        public_x: URL_SAFE_NO_PAD.encode(x),
        public_y: URL_SAFE_NO_PAD.encode(y),
        created_at: now,
        retired_at: None,
        verify_until: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Claims {
        sub: String,
        exp: u64,
    }

    #[test]
    fn generated_keys_sign_and_verify_with_jsonwebtoken() {
        let now = now_unix();
        assert!(now > 1_600_000_000, "clock looks wrong: {now}");
        let key = generate(now).expect("generate");
        assert_eq!(key.alg, "ES256");
        assert_eq!(key.created_at, now);
        assert_eq!((key.retired_at, key.verify_until), (None, None));
        assert_eq!(key.kid.len(), 11);
        // 32-byte coordinates: 43 base64url characters without padding.
        assert_eq!((key.public_x.len(), key.public_y.len()), (43, 43));

        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        let claims = Claims {
            sub: "client-1".into(),
            exp: now + 60,
        };
        let token = encode(
            &header,
            &claims,
            &EncodingKey::from_ec_der(&key.private_pkcs8),
        )
        .expect("sign");
        let public =
            DecodingKey::from_ec_components(&key.public_x, &key.public_y).expect("public key");
        let data =
            decode::<Claims>(&token, &public, &Validation::new(Algorithm::ES256)).expect("verify");
        assert_eq!(data.claims, claims);
        assert_eq!(data.header.kid.as_deref(), Some(key.kid.as_str()));

        // Another key's public half refuses it.
        let other = generate(now).expect("generate");
        assert_ne!(other.kid, key.kid);
        assert_ne!(other.private_pkcs8, key.private_pkcs8);
        let wrong =
            DecodingKey::from_ec_components(&other.public_x, &other.public_y).expect("public key");
        assert!(decode::<Claims>(&token, &wrong, &Validation::new(Algorithm::ES256)).is_err());
    }

    #[test]
    fn debug_of_a_generated_key_hides_the_private_half() {
        let key = generate(1).expect("generate");
        let shown = format!("{key:?}");
        let der = format!("{:?}", key.private_pkcs8);
        assert!(!shown.contains(&der[1..20]), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
}
