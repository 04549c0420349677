//! What the cluster agrees on: the [`Command`]s proposed through Raft, the
//! [`ClusterState`] they change, and the [`Response`] each one yields.
//!
//! [`ClusterState::apply`] is a pure function of (state, command, validator): every
//! node applies the same log to the same state and must reach the same result, so
//! nothing here reads the clock, the environment, randomness or the disk. A command
//! that would leave an invalid gateway config is answered with
//! [`Response::Rejected`] and changes nothing.
//!
//! Secrets never enter the log: clients, keys and admin tokens carry a
//! [`SecretHash`] (SHA-256, hex), which refuses to be built from anything else.

use cluster_config::schema::{GatewaySpec, RouteSpec, ServiceSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
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
}

/// Everything the state machine holds. Maps are `BTreeMap` so iteration order, and
/// therefore snapshots and validation messages, are identical on every node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    #[serde(with = "crate::codec::json_field")]
    pub gateway: GatewaySpec,
    /// By client id.
    pub clients: BTreeMap<String, ApiClient>,
    /// By key id (the data plane builds its own by-hash index from this).
    pub api_keys: BTreeMap<String, ApiKey>,
    /// By token id.
    pub admin_tokens: BTreeMap<String, AdminToken>,
    /// True once any gateway config was applied (seeded or written by an admin).
    pub seeded: bool,
}

/// What subscribers receive after every apply: the whole state and the log index it
/// reflects (the *config version* shown as `X-Sluice-Version`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Published {
    pub state: ClusterState,
    /// Index of the last applied log entry; 0 before anything was applied.
    pub version: u64,
}

/// Decides whether a gateway spec may become the replicated one. It must be a pure
/// function of the spec and identical on every node (same binary), because each
/// node evaluates it independently while applying.
pub type Validator = Arc<dyn Fn(&GatewaySpec) -> Result<(), Vec<Problem>> + Send + Sync>;

/// The production validator: `cluster_config::Gateway::compile` with no file origins
/// (config that arrives through the log came from the API) and no config dir.
///
/// A panic inside the compiler is caught and turned into a rejection: it would
/// panic identically on every node, so rejecting is still deterministic, and it is
/// far better than taking the whole control plane down on one bad spec.
pub fn compile_validator() -> Validator {
    Arc::new(|spec: &GatewaySpec| {
        let spec = spec.clone();
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            cluster_config::Gateway::compile(spec, &cluster_config::Origins::default(), None)
        }));
        match compiled {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(errors)) => Err(errors
                .0
                .into_iter()
                .map(|e| Problem::new(e.path, e.message))
                .collect()),
            Err(_) => Err(vec![Problem::new(
                "",
                "the config compiler failed unexpectedly; the change was not applied",
            )]),
        }
    })
}

/// The id a route is known by: its explicit `id`, else its path.
pub fn route_id(route: &RouteSpec) -> &str {
    route.id.as_deref().unwrap_or(&route.path)
}

impl ClusterState {
    /// Applies one command. On any `Rejected` / `NotFound` answer `self` is
    /// unchanged.
    pub fn apply(&mut self, command: &Command, validate: &Validator) -> Response {
        match command {
            Command::ReplaceGateway { spec } => self.try_gateway(spec.clone(), validate),
            Command::PutService { name, spec } => {
                let mut next = self.gateway.clone();
                next.services.insert(name.clone(), spec.clone());
                self.try_gateway(next, validate)
            }
            Command::DeleteService { name } => {
                let mut next = self.gateway.clone();
                if next.services.remove(name).is_none() {
                    return not_found("service", name);
                }
                self.try_gateway(next, validate)
            }
            Command::PutRoute { route } => {
                let mut next = self.gateway.clone();
                let id = route_id(route);
                // Replace in place so route order (which breaks ties) is stable.
                match next.routes.iter_mut().find(|r| route_id(r) == id) {
                    Some(slot) => *slot = route.clone(),
                    None => next.routes.push(route.clone()),
                }
                self.try_gateway(next, validate)
            }
            Command::DeleteRoute { id } => {
                let mut next = self.gateway.clone();
                let before = next.routes.len();
                next.routes.retain(|r| route_id(r) != id);
                if next.routes.len() == before {
                    return not_found("route", id);
                }
                self.try_gateway(next, validate)
            }
            Command::PutClient { client } => {
                if client.id.is_empty() {
                    return rejected("client.id", "must not be empty");
                }
                self.clients.insert(client.id.clone(), client.clone());
                Response::Applied
            }
            Command::DeleteClient { id } => {
                if self.clients.remove(id).is_none() {
                    return not_found("client", id);
                }
                // A key without its client could never authenticate anyone useful;
                // dropping them here keeps the key index free of orphans.
                self.api_keys.retain(|_, k| &k.client_id != id);
                Response::Applied
            }
            Command::PutApiKey { key } => {
                if key.id.is_empty() {
                    return rejected("key.id", "must not be empty");
                }
                if !self.clients.contains_key(&key.client_id) {
                    return rejected(
                        "key.client_id",
                        format!("unknown client `{}`", key.client_id),
                    );
                }
                if let Some(other) = self
                    .api_keys
                    .values()
                    .find(|k| k.key_hash == key.key_hash && k.id != key.id)
                {
                    // The data plane indexes keys by hash; two ids for one hash would
                    // make the lookup ambiguous.
                    return rejected(
                        "key.key_hash",
                        format!("already used by key `{}`", other.id),
                    );
                }
                self.api_keys.insert(key.id.clone(), key.clone());
                Response::Applied
            }
            Command::RevokeApiKey { id } => match self.api_keys.get_mut(id) {
                Some(key) => {
                    key.revoked = true;
                    Response::Applied
                }
                None => not_found("api_key", id),
            },
            Command::DeleteApiKey { id } => match self.api_keys.remove(id) {
                Some(_) => Response::Applied,
                None => not_found("api_key", id),
            },
            Command::PutAdminToken { token } => {
                if token.id.is_empty() {
                    return rejected("token.id", "must not be empty");
                }
                self.admin_tokens.insert(token.id.clone(), token.clone());
                Response::Applied
            }
            Command::DeleteAdminToken { id } => match self.admin_tokens.remove(id) {
                Some(_) => Response::Applied,
                None => not_found("admin_token", id),
            },
            Command::SeedGateway { .. } if self.seeded => Response::Applied,
            Command::SeedGateway { spec } => self.try_gateway(spec.clone(), validate),
        }
    }

    fn try_gateway(&mut self, next: GatewaySpec, validate: &Validator) -> Response {
        match validate(&next) {
            Ok(()) => {
                self.gateway = next;
                self.seeded = true;
                Response::Applied
            }
            Err(problems) => Response::Rejected { problems },
        }
    }
}

fn not_found(kind: &str, id: &str) -> Response {
    Response::NotFound {
        kind: kind.to_owned(),
        id: id.to_owned(),
    }
}

fn rejected(path: &str, message: impl Into<String>) -> Response {
    Response::Rejected {
        problems: vec![Problem::new(path, message)],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A stand-in for the real compiler (whose body is still being written): a
    /// route must name an existing service, and a service needs an upstream.
    pub(crate) fn test_validator() -> Validator {
        Arc::new(|spec: &GatewaySpec| {
            let mut problems = Vec::new();
            for (i, r) in spec.routes.iter().enumerate() {
                if !spec.services.contains_key(&r.service) {
                    problems.push(Problem::new(
                        format!("routes[{i}].service"),
                        format!("unknown service `{}`", r.service),
                    ));
                }
            }
            for (name, s) in &spec.services {
                if s.upstreams.is_empty() {
                    problems.push(Problem::new(
                        format!("services.{name}.upstreams"),
                        "at least one upstream is required",
                    ));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(problems)
            }
        })
    }

    pub(crate) fn service(url: &str) -> ServiceSpec {
        ServiceSpec {
            upstreams: vec![url.to_owned()],
            ..Default::default()
        }
    }

    pub(crate) fn route(path: &str, service: &str) -> RouteSpec {
        RouteSpec {
            path: path.to_owned(),
            service: service.to_owned(),
            ..Default::default()
        }
    }

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

    #[test]
    fn gateway_commands_validate_and_reject_without_change() {
        let v = test_validator();
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(
                &Command::PutService {
                    name: "users".into(),
                    spec: service("http://127.0.0.1:9001"),
                },
                &v
            ),
            Response::Applied
        );
        assert_eq!(
            s.apply(
                &Command::PutRoute {
                    route: route("/users", "users")
                },
                &v
            ),
            Response::Applied
        );
        let before = s.clone();
        // A route to a missing service: rejected, state untouched.
        let r = s.apply(
            &Command::PutRoute {
                route: route("/orders", "orders"),
            },
            &v,
        );
        assert!(
            matches!(r, Response::Rejected { ref problems } if problems[0].path == "routes[1].service")
        );
        assert_eq!(s, before);
        // Deleting a service still in use: rejected too.
        let r = s.apply(
            &Command::DeleteService {
                name: "users".into(),
            },
            &v,
        );
        assert!(matches!(r, Response::Rejected { .. }));
        assert_eq!(s, before);
        // Upsert by id keeps the position; id defaults to the path.
        let mut changed = route("/users", "users");
        changed.methods = vec!["GET".into()];
        s.apply(
            &Command::PutRoute {
                route: changed.clone(),
            },
            &v,
        );
        assert_eq!(s.gateway.routes, vec![changed]);
        assert_eq!(
            s.apply(&Command::DeleteRoute { id: "/nope".into() }, &v),
            Response::NotFound {
                kind: "route".into(),
                id: "/nope".into()
            }
        );
        assert_eq!(
            s.apply(
                &Command::DeleteRoute {
                    id: "/users".into()
                },
                &v
            ),
            Response::Applied
        );
        assert!(s.gateway.routes.is_empty());
    }

    #[test]
    fn clients_keys_tokens() {
        let v = test_validator();
        let mut s = ClusterState::default();
        let key = ApiKey {
            id: "k1".into(),
            client_id: "c1".into(),
            key_hash: SecretHash::of(b"key-1"),
            revoked: false,
        };
        // Key before its client: rejected.
        assert!(matches!(
            s.apply(&Command::PutApiKey { key: key.clone() }, &v),
            Response::Rejected { .. }
        ));
        let client = ApiClient {
            id: "c1".into(),
            name: "one".into(),
            roles: vec!["publisher".into()],
            scopes: vec!["read".into()],
            secret_hash: SecretHash::of(b"secret-1"),
        };
        assert_eq!(
            s.apply(
                &Command::PutClient {
                    client: client.clone()
                },
                &v
            ),
            Response::Applied
        );
        // Idempotent: the same put twice leaves the same state.
        assert_eq!(
            s.apply(&Command::PutClient { client }, &v),
            Response::Applied
        );
        assert_eq!(
            s.apply(&Command::PutApiKey { key: key.clone() }, &v),
            Response::Applied
        );
        let dup = ApiKey {
            id: "k2".into(),
            ..key.clone()
        };
        assert!(matches!(
            s.apply(&Command::PutApiKey { key: dup }, &v),
            Response::Rejected { .. }
        ));
        assert_eq!(
            s.apply(&Command::RevokeApiKey { id: "k1".into() }, &v),
            Response::Applied
        );
        assert!(s.api_keys["k1"].revoked);
        assert_eq!(
            s.apply(&Command::RevokeApiKey { id: "k1".into() }, &v),
            Response::Applied
        );
        assert_eq!(
            s.apply(&Command::DeleteClient { id: "c1".into() }, &v),
            Response::Applied
        );
        assert!(s.api_keys.is_empty(), "keys go with their client");
        let token = AdminToken {
            id: "t1".into(),
            token_hash: SecretHash::of(b"admin"),
        };
        assert_eq!(
            s.apply(&Command::PutAdminToken { token }, &v),
            Response::Applied
        );
        assert!(s.admin_tokens["t1"].token_hash.matches(b"admin"));
        assert!(matches!(
            s.apply(&Command::DeleteAdminToken { id: "zz".into() }, &v),
            Response::NotFound { .. }
        ));
    }

    #[test]
    fn real_compiler_rejects_invalid_gateway() {
        let v = compile_validator();
        let mut s = ClusterState::default();
        assert_eq!(
            s.apply(
                &Command::PutService {
                    name: "users".into(),
                    spec: service("http://127.0.0.1:9001"),
                },
                &v
            ),
            Response::Applied
        );
        let before = s.clone();
        let r = s.apply(
            &Command::PutRoute {
                route: route("/orders", "no-such-service"),
            },
            &v,
        );
        match r {
            Response::Rejected { problems } => assert!(!problems.is_empty()),
            other => panic!("expected rejection, got {other:?}"),
        }
        assert_eq!(s, before);
        assert_eq!(
            s.apply(
                &Command::PutRoute {
                    route: route("/users", "users")
                },
                &v
            ),
            Response::Applied
        );
    }

    #[test]
    fn apply_is_deterministic() {
        let v = test_validator();
        let cmds = crate::codec::tests::sample_commands();
        let run = || {
            let mut s = ClusterState::default();
            let rs: Vec<Response> = cmds.iter().map(|c| s.apply(c, &v)).collect();
            (crate::codec::encode(&s).expect("encode"), rs)
        };
        assert_eq!(run(), run());
    }
}
