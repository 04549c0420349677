//! The replicated state ([`ClusterState`]) and how each [`Command`] changes it.
//!
//! [`ClusterState::apply`] is a pure function of (state, command, validator): every
//! node applies the same log to the same state and must reach the same result, so
//! nothing here reads the clock, the environment, randomness or the disk (anything
//! time-dependent takes a time the proposer stamped into the command). A command
//! that would leave an invalid state is answered with [`Response::Rejected`] and
//! changes nothing; that answer travels back to the writer through the write's
//! response, so validation happens once, here, against the state the command
//! actually lands on.
//!
//! The state is split by domain, and so is the apply code: [`config`] (services,
//! routes, rate limits, auth settings), [`credentials`] (clients, API keys,
//! admin tokens) and [`signing`] (the cluster's OAuth signing keys). Low-churn domains sit behind `Arc`s: publishing the state after
//! an apply is a handful of pointer copies, and a subscriber tells "did this part
//! change" with `Arc::ptr_eq`. High-churn domains (limiter reports, webhook
//! attempts) must not be republished whole on every apply: their apply code pushes
//! a [`Delta`] for the actor that owns the domain instead.

pub mod config;
pub mod credentials;
pub mod signing;
mod webhooks;

use crate::codec::{self, CodecError};
use crate::command::{Command, Problem, Response};
use crate::limits::{Granted, Ledger};
use crate::webhooks::Webhooks;
use crate::NodeId;
use cluster_config::schema::GatewaySpec;
pub use credentials::Credentials;
use serde::{Deserialize, Serialize};
pub use signing::{SigningKey, SigningKeys};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Everything the state machine holds.
///
/// The serialized form is what snapshots on disk and snapshot transfers carry;
/// bincode writes a struct as its fields in order with no framing, so
/// `credentials` (a struct of the former top-level `clients`, `api_keys`,
/// `admin_tokens` maps, in that order) encodes exactly as those three fields did.
///
/// New domains are appended at the end. bincode has no notion of a missing
/// field (`#[serde(default)]` does not help it), so a snapshot written before a
/// domain existed is read by [`ClusterState::decode_snapshot`], which falls back
/// to the previous layout; every appended field needs such a fallback.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    #[serde(with = "crate::codec::json_field")]
    pub gateway: Arc<GatewaySpec>,
    pub credentials: Arc<Credentials>,
    /// True once any gateway config was applied (seeded or written by an admin).
    pub seeded: bool,
    /// The cluster's OAuth signing keys (added after the first release; see
    /// [`ClusterState::decode_snapshot`]).
    #[serde(default)]
    pub signing: Arc<SigningKeys>,
}

/// The layout of [`ClusterState`] before the signing domain: what snapshots
/// written by the previous build hold.
#[derive(Deserialize)]
struct ClusterStateV1 {
    #[serde(with = "crate::codec::json_field")]
    gateway: Arc<GatewaySpec>,
    credentials: Arc<Credentials>,
    seeded: bool,
}

impl From<ClusterStateV1> for ClusterState {
    fn from(v1: ClusterStateV1) -> ClusterState {
        ClusterState {
            gateway: v1.gateway,
            credentials: v1.credentials,
            seeded: v1.seeded,
            signing: Arc::default(),
        }
    }
}

/// A change in a high-churn domain, handed to the domain's owner (an actor on the
/// node) rather than published as whole state. Variants are appended as those
/// domains arrive (rate-limiter reports, webhook attempts).
#[derive(Debug, Clone, PartialEq)]
pub enum Delta {
    /// The whole state was replaced by a snapshot (a lagging node caught up, or the
    /// node restarted): owners drop what they hold and rebuild from the published
    /// state instead of patching.
    StateReplaced,
    /// A rate-limit report was applied: the reporter's allowances after it.
    LimitsGranted(Granted),
    /// An admin reset these ledger keys.
    LimitsReset { keys: Vec<String> },
    /// The webhook domain changed in a way the dispatcher acts on (new or
    /// replayed deliveries, subscriptions): it re-reads the shared state.
    WebhooksChanged,
}

/// Deltas produced by one batch of applied entries, with the log index of the
/// last entry in the batch.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaBatch {
    pub version: u64,
    pub deltas: Vec<Delta>,
}

/// What subscribers receive after every apply: the whole low-churn state (cheap to
/// clone: `Arc`s) and the log index it reflects (the *config version* shown as
/// `X-Sluice-Version`).
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

/// What apply needs besides the state and the command, and what it produces
/// besides the response.
pub struct ApplyCtx<'a> {
    pub validate: &'a Validator,
    /// Changes of high-churn domains made by this command, for their owners.
    pub deltas: Vec<Delta>,
    /// The rate-limit ledger: replicated, but kept out of [`ClusterState`] so
    /// publishing after each apply never copies it. `None` (config-only tests):
    /// limiter commands change nothing.
    pub ledger: Option<&'a mut Ledger>,
    /// The cluster's members (voters and learners) as of this entry: every one
    /// has a rate-limit floor reserved.
    pub members: BTreeSet<NodeId>,
    /// The webhook domain, kept out of [`ClusterState`] like the ledger. `None`
    /// (config-only tests): webhook commands answer `Applied` and change nothing.
    pub webhooks: Option<&'a mut Webhooks>,
}

impl<'a> ApplyCtx<'a> {
    pub fn new(validate: &'a Validator) -> ApplyCtx<'a> {
        ApplyCtx {
            validate,
            deltas: Vec::new(),
            ledger: None,
            members: BTreeSet::new(),
            webhooks: None,
        }
    }
}

/// What a snapshot holds: the published state, then the rate-limit ledger (added
/// after the signing domain; older snapshots end after the state), then the
/// webhook domain (added after the ledger; older snapshots end after it).
#[derive(Serialize)]
struct SnapshotRef<'a> {
    state: &'a ClusterState,
    ledger: &'a Ledger,
    webhooks: &'a Webhooks,
}

#[derive(Deserialize)]
struct SnapshotOwned {
    state: ClusterState,
    ledger: Ledger,
    webhooks: Webhooks,
}

/// The layout before the webhook domain.
#[derive(Deserialize)]
struct SnapshotV2 {
    state: ClusterState,
    ledger: Ledger,
}

/// Encodes a snapshot's data.
pub fn encode_snapshot(
    state: &ClusterState,
    ledger: &Ledger,
    webhooks: &Webhooks,
) -> Result<Vec<u8>, CodecError> {
    codec::encode(&SnapshotRef {
        state,
        ledger,
        webhooks,
    })
}

/// [`encode_snapshot`] from the state and the other parts already encoded
/// (bincode writes a struct as its fields one after the other, so they concatenate).
pub fn encode_snapshot_parts(
    state: &ClusterState,
    ledger: &Result<Vec<u8>, CodecError>,
    webhooks: &Result<Vec<u8>, CodecError>,
) -> Result<Vec<u8>, CodecError> {
    let ledger = ledger.as_ref().map_err(Clone::clone)?;
    let webhooks = webhooks.as_ref().map_err(Clone::clone)?;
    let mut data = codec::encode(state)?;
    data.extend_from_slice(ledger);
    data.extend_from_slice(webhooks);
    Ok(data)
}

/// Decodes a snapshot's data, written by this build or an earlier one (which
/// had no webhooks, or no ledger either: empty ones stand in). The layouts are
/// tried newest first; an older layout's bytes always fail a newer one (they
/// end where the appended part would start).
pub fn decode_snapshot(bytes: &[u8]) -> Result<(ClusterState, Ledger, Webhooks), CodecError> {
    match codec::decode::<SnapshotOwned>(bytes) {
        Ok(s) => Ok((s.state, s.ledger, s.webhooks)),
        Err(current) => match codec::decode::<SnapshotV2>(bytes) {
            Ok(s) => Ok((s.state, s.ledger, Webhooks::default())),
            Err(_) => ClusterState::decode_snapshot(bytes)
                .map(|state| (state, Ledger::default(), Webhooks::default()))
                .map_err(|_| current),
        },
    }
}

impl ClusterState {
    /// Decodes a snapshot's state, written by this build or the previous one
    /// (a node restarting on a new binary reads its old snapshot; a follower may
    /// be sent one by a leader not yet upgraded). Today's layout is tried first;
    /// bytes of the old layout always fail it (they end where the new fields
    /// would start), so the fallback cannot misread a current snapshot.
    pub fn decode_snapshot(bytes: &[u8]) -> Result<ClusterState, CodecError> {
        match codec::decode::<ClusterState>(bytes) {
            Ok(state) => Ok(state),
            Err(current) => match codec::decode::<ClusterStateV1>(bytes) {
                Ok(v1) => Ok(v1.into()),
                // The error for today's layout is the one worth reporting.
                Err(_) => Err(current),
            },
        }
    }

    /// Applies one command: dispatches to the domain that owns it. On any
    /// `Rejected` / `NotFound` answer `self` is unchanged.
    pub fn apply(&mut self, command: &Command, ctx: &mut ApplyCtx<'_>) -> Response {
        use Command::*;
        let v = ctx.validate;
        match command {
            ReplaceGateway { spec } => config::replace(self, spec.clone(), v),
            SeedGateway { spec } => config::seed(self, spec, v),
            PutService { name, spec } => config::put_service(self, name, spec, v),
            DeleteService { name } => config::delete_service(self, name, v),
            PutRoute { route } => config::put_route(self, route, v),
            DeleteRoute { id } => config::delete_route(self, id, v),
            PutClient { client } => credentials::put_client(&mut self.credentials, client),
            DeleteClient { id } => credentials::delete_client(&mut self.credentials, id),
            PutApiKey { key } => credentials::put_api_key(&mut self.credentials, key),
            RevokeApiKey { id } => credentials::revoke_api_key(&mut self.credentials, id),
            DeleteApiKey { id } => credentials::delete_api_key(&mut self.credentials, id),
            PutAdminToken { token } => credentials::put_admin_token(&mut self.credentials, token),
            DeleteAdminToken { id } => credentials::delete_admin_token(&mut self.credentials, id),
            SeedSigningKey { key } => signing::seed(&mut self.signing, key),
            RotateSigningKey {
                key,
                now,
                verify_for_secs,
            } => signing::rotate(&mut self.signing, key, *now, *verify_for_secs),
            ReportLimits { report } => {
                if let Some(ledger) = ctx.ledger.as_deref_mut() {
                    let granted = ledger.apply(report, &ctx.members);
                    if !granted.grants.is_empty() {
                        ctx.deltas.push(Delta::LimitsGranted(granted));
                    }
                }
                Response::Applied
            }
            ResetLimits { keys } => {
                if let Some(ledger) = ctx.ledger.as_deref_mut() {
                    ledger.reset(keys);
                    ctx.deltas.push(Delta::LimitsReset { keys: keys.clone() });
                }
                Response::Applied
            }
            PutWebhookSubscription { subscription } => {
                webhooks::put_subscription(ctx, subscription)
            }
            DeleteWebhookSubscription { id } => webhooks::delete_subscription(ctx, id),
            RotateWebhookSecret {
                id,
                secret,
                now_ms,
                grace_ms,
            } => webhooks::rotate(ctx, id, secret, *now_ms, *grace_ms),
            PublishEvent {
                event,
                idempotency_key,
                now_ms,
            } => webhooks::publish(ctx, event, idempotency_key.as_deref(), *now_ms),
            RecordWebhookAttempts { reports } => webhooks::record(ctx, reports),
            ReplayWebhookDeliveries { target, now_ms } => webhooks::replay(ctx, target, *now_ms),
            PurgeWebhooks {
                now_ms,
                delivered_retention_ms,
                dead_retention_ms,
            } => webhooks::purge(ctx, *now_ms, *delivered_retention_ms, *dead_retention_ms),
        }
    }
}

pub(crate) fn not_found(kind: &str, id: &str) -> Response {
    Response::NotFound {
        kind: kind.to_owned(),
        id: id.to_owned(),
    }
}

pub(crate) fn rejected(path: &str, message: impl Into<String>) -> Response {
    Response::Rejected {
        problems: vec![Problem::new(path, message)],
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::{AdminToken, ApiClient, ApiKey, SecretHash};
    use cluster_config::schema::{RouteSpec, ServiceSpec};

    fn run(s: &mut ClusterState, command: &Command, v: &Validator) -> Response {
        s.apply(command, &mut ApplyCtx::new(v))
    }

    #[test]
    fn a_snapshot_from_parts_is_the_snapshot() {
        use crate::limits::{ledger_key, Algo, Item, Report, Terms};
        let mut ledger = Ledger::default();
        let terms = Terms {
            limit: 100,
            window_ms: 1000,
            algo: Algo::SlidingWindow,
            members: 0,
        };
        let item = Item {
            key: ledger_key("p", "ip:1"),
            terms,
            window: 5,
            hits: 3,
            want: 10,
        };
        let report = Report {
            node: 1,
            incarnation: 1,
            now_ms: 5000,
            items: vec![item],
        };
        ledger.apply(&report, &[1, 2].into());
        let state = ClusterState::default();
        let hooks = Webhooks::default();
        let whole = encode_snapshot(&state, &ledger, &hooks).expect("encode");
        let parts = encode_snapshot_parts(&state, &codec::encode(&ledger), &codec::encode(&hooks))
            .expect("parts");
        assert_eq!(whole, parts);
        let (back_state, back_ledger, _) = decode_snapshot(&parts).expect("decode");
        assert_eq!(back_state, state);
        // (`Terms::members` is not carried: apply sets it from the membership.)
        assert_eq!(
            codec::encode(&back_ledger).ok(),
            codec::encode(&ledger).ok()
        );
        assert_eq!(back_ledger.keys.len(), 1);
    }

    /// A small stand-in for the real compiler (fast, and independent of its
    /// rules): a route must name an existing service, and a service needs an
    /// upstream.
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
    fn gateway_commands_validate_and_reject_without_change() {
        let v = test_validator();
        let mut s = ClusterState::default();
        assert_eq!(
            run(
                &mut s,
                &Command::PutService {
                    name: "users".into(),
                    spec: service("http://127.0.0.1:9001"),
                },
                &v
            ),
            Response::Applied
        );
        assert_eq!(
            run(
                &mut s,
                &Command::PutRoute {
                    route: route("/users", "users")
                },
                &v
            ),
            Response::Applied
        );
        let before = s.clone();
        // A route to a missing service: rejected, state untouched.
        let r = run(
            &mut s,
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
        let r = run(
            &mut s,
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
        run(
            &mut s,
            &Command::PutRoute {
                route: changed.clone(),
            },
            &v,
        );
        assert_eq!(s.gateway.routes, vec![changed]);
        assert_eq!(
            run(&mut s, &Command::DeleteRoute { id: "/nope".into() }, &v),
            Response::NotFound {
                kind: "route".into(),
                id: "/nope".into()
            }
        );
        assert_eq!(
            run(
                &mut s,
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
            run(&mut s, &Command::PutApiKey { key: key.clone() }, &v),
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
            run(
                &mut s,
                &Command::PutClient {
                    client: client.clone()
                },
                &v
            ),
            Response::Applied
        );
        // Idempotent: the same put twice leaves the same state.
        assert_eq!(
            run(&mut s, &Command::PutClient { client }, &v),
            Response::Applied
        );
        assert_eq!(
            run(&mut s, &Command::PutApiKey { key: key.clone() }, &v),
            Response::Applied
        );
        let dup = ApiKey {
            id: "k2".into(),
            ..key.clone()
        };
        assert!(matches!(
            run(&mut s, &Command::PutApiKey { key: dup }, &v),
            Response::Rejected { .. }
        ));
        assert_eq!(
            run(&mut s, &Command::RevokeApiKey { id: "k1".into() }, &v),
            Response::Applied
        );
        assert!(s.credentials.api_keys["k1"].revoked);
        assert_eq!(
            run(&mut s, &Command::RevokeApiKey { id: "k1".into() }, &v),
            Response::Applied
        );
        assert_eq!(
            run(&mut s, &Command::DeleteClient { id: "c1".into() }, &v),
            Response::Applied
        );
        assert!(
            s.credentials.api_keys.is_empty(),
            "keys go with their client"
        );
        let token = AdminToken {
            id: "t1".into(),
            token_hash: SecretHash::of(b"admin"),
        };
        assert_eq!(
            run(&mut s, &Command::PutAdminToken { token }, &v),
            Response::Applied
        );
        assert!(s.credentials.admin_tokens["t1"]
            .token_hash
            .matches(b"admin"));
        assert!(matches!(
            run(&mut s, &Command::DeleteAdminToken { id: "zz".into() }, &v),
            Response::NotFound { .. }
        ));
    }

    #[test]
    fn real_compiler_rejects_invalid_gateway() {
        let v = compile_validator();
        let mut s = ClusterState::default();
        assert_eq!(
            run(
                &mut s,
                &Command::PutService {
                    name: "users".into(),
                    spec: service("http://127.0.0.1:9001"),
                },
                &v
            ),
            Response::Applied
        );
        let before = s.clone();
        let r = run(
            &mut s,
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
            run(
                &mut s,
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
            let rs: Vec<Response> = cmds.iter().map(|c| run(&mut s, c, &v)).collect();
            (crate::codec::encode(&s).expect("encode"), rs)
        };
        assert_eq!(run(), run());
    }

    /// The domain split changed the struct, not the bytes: a snapshot written by
    /// the previous build (flat `clients`, `api_keys`, `admin_tokens`) decodes into
    /// today's state, and today's state encodes to the same bytes.
    #[test]
    fn snapshot_encoding_is_unchanged_by_the_domain_split() {
        #[derive(Serialize, Deserialize)]
        struct FlatState {
            #[serde(with = "crate::codec::json_field")]
            gateway: GatewaySpec,
            clients: std::collections::BTreeMap<String, ApiClient>,
            api_keys: std::collections::BTreeMap<String, ApiKey>,
            admin_tokens: std::collections::BTreeMap<String, AdminToken>,
            seeded: bool,
        }
        let v = test_validator();
        let mut s = ClusterState::default();
        let commands = [
            Command::PutService {
                name: "users".into(),
                spec: service("http://127.0.0.1:9001"),
            },
            Command::PutClient {
                client: ApiClient {
                    id: "c1".into(),
                    name: "one".into(),
                    roles: vec!["publisher".into()],
                    scopes: vec![],
                    secret_hash: SecretHash::of(b"s"),
                },
            },
            Command::PutApiKey {
                key: ApiKey {
                    id: "k1".into(),
                    client_id: "c1".into(),
                    key_hash: SecretHash::of(b"k"),
                    revoked: false,
                },
            },
            Command::PutAdminToken {
                token: AdminToken {
                    id: "t1".into(),
                    token_hash: SecretHash::of(b"t"),
                },
            },
        ];
        for c in &commands {
            assert_eq!(run(&mut s, c, &v), Response::Applied);
        }
        let flat = FlatState {
            gateway: (*s.gateway).clone(),
            clients: s.credentials.clients.clone(),
            api_keys: s.credentials.api_keys.clone(),
            admin_tokens: s.credentials.admin_tokens.clone(),
            seeded: s.seeded,
        };
        let old = crate::codec::encode(&flat).expect("encode");
        // Since then only the signing domain was appended: today's bytes are the
        // old ones followed by the (empty) key list.
        let now = crate::codec::encode(&s).expect("encode");
        assert_eq!(now[..old.len()], old[..]);
        assert_eq!(
            now[old.len()..],
            crate::codec::encode(&SigningKeys::default()).expect("encode")[..]
        );
        let decoded = ClusterState::decode_snapshot(&old).expect("decode");
        assert_eq!(decoded, s);
    }

    /// A snapshot written by the build before the signing domain (bytes taken
    /// from it: one service, one client, seeded) still loads, with no keys.
    #[test]
    fn snapshot_of_the_previous_layout_loads() {
        const PREVIOUS: &str = "657b227365727669636573223a7b227573657273223a7b22757073747265616d73223a5b22687474703a2f2f3132372e302e302e313a39303031225d7d7d2c22726f75746573223a5b5d2c22726174655f6c696d697473223a5b5d2c2261757468223a7b7d7d01026331026331036f6e65010561646d696e004030343361373138373734633537326264386132356164626562316266636435633032353661653131636563663966396333663932356430653532626561663839000001";
        let bytes: Vec<u8> = (0..PREVIOUS.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&PREVIOUS[i..i + 2], 16).expect("hex"))
            .collect();
        assert!(crate::codec::decode::<ClusterState>(&bytes).is_err());
        let s = ClusterState::decode_snapshot(&bytes).expect("old snapshot loads");
        assert!(s.seeded);
        assert_eq!(
            s.gateway.services["users"].upstreams,
            ["http://127.0.0.1:9001"]
        );
        let client = &s.credentials.clients["c1"];
        assert_eq!(
            (client.name.as_str(), &client.roles[..]),
            ("one", &["admin".to_owned()][..])
        );
        assert!(client.secret_hash.matches(b"s"));
        assert!(s.signing.keys.is_empty());
        // Garbage is still an error, not a default state.
        assert!(ClusterState::decode_snapshot(&bytes[..bytes.len() - 1]).is_err());
    }

    /// Today's layout round-trips with its keys, private halves included.
    #[test]
    fn snapshot_with_signing_keys_round_trips() {
        let v = test_validator();
        let mut s = ClusterState::default();
        let seed = Command::SeedSigningKey {
            key: signing::tests::key("a", 10),
        };
        let rotate = Command::RotateSigningKey {
            key: signing::tests::key("b", 20),
            now: 20,
            verify_for_secs: 60,
        };
        assert_eq!(run(&mut s, &seed, &v), Response::Applied);
        assert_eq!(run(&mut s, &rotate, &v), Response::Applied);
        let bytes = crate::codec::encode(&s).expect("encode");
        let back = ClusterState::decode_snapshot(&bytes).expect("decode");
        assert_eq!(back, s);
        assert_eq!(back.signing.keys.len(), 2);
        assert_eq!(back.signing.active().map(|k| k.kid.as_str()), Some("b"));
        assert_eq!(back.signing.keys[0].verify_until, Some(80));
    }

    /// Publishing relies on it: a change in one domain leaves the other's `Arc`
    /// as it was, so subscribers can tell what changed by pointer.
    #[test]
    fn a_change_touches_only_its_own_domain() {
        let v = test_validator();
        let mut s = ClusterState::default();
        run(
            &mut s,
            &Command::PutService {
                name: "users".into(),
                spec: service("http://127.0.0.1:9001"),
            },
            &v,
        );
        let before = s.clone();
        let client = ApiClient {
            id: "c1".into(),
            name: "one".into(),
            roles: vec![],
            scopes: vec![],
            secret_hash: SecretHash::of(b"s"),
        };
        assert_eq!(
            run(&mut s, &Command::PutClient { client }, &v),
            Response::Applied
        );
        assert!(Arc::ptr_eq(&before.gateway, &s.gateway));
        assert!(!Arc::ptr_eq(&before.credentials, &s.credentials));
        let before = s.clone();
        run(
            &mut s,
            &Command::PutRoute {
                route: route("/users", "users"),
            },
            &v,
        );
        assert!(!Arc::ptr_eq(&before.gateway, &s.gateway));
        assert!(Arc::ptr_eq(&before.credentials, &s.credentials));
        // A refused command changes no pointer at all.
        let before = s.clone();
        run(&mut s, &Command::DeleteClient { id: "nope".into() }, &v);
        run(
            &mut s,
            &Command::PutRoute {
                route: route("/x", "missing"),
            },
            &v,
        );
        assert!(Arc::ptr_eq(&before.gateway, &s.gateway));
        assert!(Arc::ptr_eq(&before.credentials, &s.credentials));
        assert!(Arc::ptr_eq(&before.signing, &s.signing));
        // A new signing key touches the signing domain only.
        let seed = Command::SeedSigningKey {
            key: signing::tests::key("a", 1),
        };
        assert_eq!(run(&mut s, &seed, &v), Response::Applied);
        assert!(Arc::ptr_eq(&before.gateway, &s.gateway));
        assert!(Arc::ptr_eq(&before.credentials, &s.credentials));
        assert!(!Arc::ptr_eq(&before.signing, &s.signing));
    }
}
