//! What the cluster agrees on: the [`Command`]s proposed through Raft and the
//! [`Response`] each one yields. The state they change, and the apply code split
//! by domain, live in [`crate::state`].
//!
//! `Command` is encoded by bincode, which numbers enum variants by position: the
//! log on disk, snapshots and peers on an older build during a rolling restart
//! decode them that way. Variants are therefore only ever appended, never
//! reordered, renamed in place of another, or removed.
//!
//! Secrets never enter the log: clients, keys and admin tokens carry a
//! [`SecretHash`] (SHA-256, hex), which refuses to be built from anything else.
//! The one exception is the cluster's OAuth signing key
//! ([`crate::state::signing::SigningKey`]): every node must be able to sign with
//! it, so its private half is replicated (and kept out of `Debug` and the admin
//! API). HS256 secrets in the gateway config's `auth.jwt.keys` are replicated
//! too, as configured, and redacted on the way out of the admin API.

use crate::limits::Report;
use crate::state::signing::SigningKey;
use crate::webhooks::{AttemptReport, Event, ReplayTarget, Subscription, WebhookSecret};
use cluster_config::schema::{GatewaySpec, RouteSpec, ServiceSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// SHA-256 of a secret, as 64 lower-case hex characters. Deserialising checks the
/// shape, so a plaintext secret cannot be smuggled into the log by mistake.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretHash(String);

impl SecretHash {
    /// Hashes `secret`. The admin API calls this before proposing a command.
    pub fn of(secret: &[u8]) -> SecretHash {
        SecretHash(to_hex(&Sha256::digest(secret)))
    }

    /// Accepts an existing hash (64 hex characters, either case; stored lower-case).
    pub fn from_hex(hex: &str) -> Result<SecretHash, InvalidHash> {
        if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(SecretHash(hex.to_ascii_lowercase()))
        } else {
            Err(InvalidHash)
        }
    }

    pub fn as_hex(&self) -> &str {
        &self.0
    }

    /// Whether `secret` hashes to this value, compared in constant time so response
    /// timing does not reveal how much of a guess was right.
    pub fn matches(&self, secret: &[u8]) -> bool {
        let candidate = to_hex(&Sha256::digest(secret));
        candidate.as_bytes().ct_eq(self.0.as_bytes()).into()
    }
}

// Hashes are not secret, but keeping them out of debug logs costs nothing.
impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.0[..8.min(self.0.len())])
    }
}

impl TryFrom<String> for SecretHash {
    type Error = InvalidHash;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        SecretHash::from_hex(&value)
    }
}

impl From<SecretHash> for String {
    fn from(value: SecretHash) -> String {
        value.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 hex digest (expected 64 hex characters)")]
pub struct InvalidHash;

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 0x0f) as usize] as char);
    }
    out
}

/// An OAuth2 / API client: who it is and what it may do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiClient {
    pub id: String,
    pub name: String,
    pub roles: Vec<String>,
    pub scopes: Vec<String>,
    /// Hash of the client secret (client-credentials grant).
    pub secret_hash: SecretHash,
}

/// An API key. The data plane looks keys up by `key_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: String,
    pub client_id: String,
    pub key_hash: SecretHash,
    /// Revoked keys are kept (so the admin API can list them) but never accepted.
    pub revoked: bool,
}

/// A bearer token for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminToken {
    pub id: String,
    pub token_hash: SecretHash,
}

/// One replicated change. Variants are append-only: the log on disk and peers on
/// an older build decode them by position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// `PUT /admin/config`: replace services, routes, rate limits and auth at once.
    ReplaceGateway {
        #[serde(with = "crate::codec::json_field")]
        spec: GatewaySpec,
    },
    /// Insert or replace one service by name.
    PutService {
        name: String,
        #[serde(with = "crate::codec::json_field")]
        spec: ServiceSpec,
    },
    DeleteService {
        name: String,
    },
    /// Insert or replace one route, matched by its id (which defaults to its path).
    PutRoute {
        #[serde(with = "crate::codec::json_field")]
        route: RouteSpec,
    },
    DeleteRoute {
        id: String,
    },
    /// Insert or replace a client by id.
    PutClient {
        client: ApiClient,
    },
    /// Removes the client and every API key that belongs to it.
    DeleteClient {
        id: String,
    },
    /// Insert or replace a key by id; its client must exist.
    PutApiKey {
        key: ApiKey,
    },
    RevokeApiKey {
        id: String,
    },
    DeleteApiKey {
        id: String,
    },
    PutAdminToken {
        token: AdminToken,
    },
    DeleteAdminToken {
        id: String,
    },
    /// The YAML config a node found at its first start: applied only while no
    /// gateway config has ever been set, so it is proposed once and, after that,
    /// the replicated state is the source of truth.
    SeedGateway {
        #[serde(with = "crate::codec::json_field")]
        spec: GatewaySpec,
    },
    /// A founding node's freshly generated OAuth signing key: applied only while
    /// the cluster has none, so every founding node may propose one and the first
    /// to commit wins.
    SeedSigningKey {
        key: SigningKey,
    },
    /// `POST /admin/signing-keys/rotate`: `key` becomes the active key; the one it
    /// replaces is retired at `now` (the proposer's clock, Unix seconds) and keeps
    /// verifying for `verify_for_secs` (the token lifetime); keys whose
    /// verification window ended before `now` are dropped.
    RotateSigningKey {
        key: SigningKey,
        now: u64,
        verify_for_secs: u64,
    },
    /// A node's rate-limit report (node-originated, every `sync_interval`): the
    /// hits it admitted and the allowance it wants, per key. Applied to the
    /// replicated ledger ([`crate::limits::Ledger`]), not to [`crate::ClusterState`].
    ReportLimits {
        report: Report,
    },
    /// `DELETE /admin/rate-limits/{scope}/{key}`: forgets these ledger keys
    /// ([`crate::limits::ledger_key`]), so each starts a fresh window.
    ResetLimits {
        keys: Vec<String>,
    },
    /// Create or update a webhook subscription (an empty `secret` keeps the
    /// current one). Applied to [`crate::webhooks::Webhooks`], like every webhook
    /// command below.
    PutWebhookSubscription {
        subscription: Subscription,
    },
    DeleteWebhookSubscription {
        id: String,
    },
    /// A new secret; the old one signs alongside it until `now_ms + grace_ms`.
    RotateWebhookSecret {
        id: String,
        secret: WebhookSecret,
        now_ms: u64,
        grace_ms: u64,
    },
    /// `POST /admin/events`: answered with [`Response::Event`].
    PublishEvent {
        event: Event,
        idempotency_key: Option<String>,
        now_ms: u64,
    },
    /// The leader's dispatcher reporting attempt outcomes, in batches.
    RecordWebhookAttempts {
        reports: Vec<AttemptReport>,
    },
    /// Make dead letters (or one delivery) pending again, due at `now_ms`.
    ReplayWebhookDeliveries {
        target: ReplayTarget,
        now_ms: u64,
    },
    /// Retention, proposed by the leader's dispatcher now and then.
    PurgeWebhooks {
        now_ms: u64,
        delivered_retention_ms: u64,
        dead_retention_ms: u64,
    },
}

/// One reason a command was rejected, shaped like a config validation error so the
/// admin API can answer 422 with the same JSON it uses for `sluice validate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Key path inside the gateway config (`routes[2].service`), or empty.
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// The outcome of applying one log entry. Blank and membership entries yield
/// `Applied`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// The command took effect (re-applying an identical put is also `Applied`).
    Applied,
    /// The command named something that does not exist; nothing changed.
    NotFound { kind: String, id: String },
    /// The command would have produced an invalid state; nothing changed.
    Rejected { problems: Vec<Problem> },
    /// `PublishEvent`: the event's id (the first one's, for a reused idempotency
    /// key) and whether this command created it.
    Event { id: String, created: bool },
    /// A webhook command that changes a number of deliveries (replay, purge).
    Count { count: u64 },
}

/// The id a route is known by: its explicit `id`, else its path.
pub fn route_id(route: &RouteSpec) -> &str {
    route.id.as_deref().unwrap_or(&route.path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_hashes() {
        let h = SecretHash::of(b"hunter2");
        assert_eq!(h.as_hex().len(), 64);
        assert_ne!(h.as_hex(), "hunter2");
        assert!(h.matches(b"hunter2"));
        assert!(!h.matches(b"hunter3"));
        assert!(SecretHash::from_hex("hunter2").is_err());
        assert_eq!(
            SecretHash::from_hex(&h.as_hex().to_uppercase()).ok(),
            Some(h.clone())
        );
        // Known vector: SHA-256("abc").
        assert_eq!(
            SecretHash::of(b"abc").as_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
