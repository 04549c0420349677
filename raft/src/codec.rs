//! The one binary encoding of the control plane: bincode 2 (serde mode, standard
//! config) for Raft RPC bodies and for everything this crate writes to sled.
//!
//! Keeping it in one module means disk and wire can never drift apart, and there is
//! one place that guarantees malformed bytes (a bad peer, a torn file) come back as a
//! [`CodecError`] rather than a panic or a huge allocation.
//!
//! bincode is not self-describing, so serde attributes that only work with formats
//! that are (`#[serde(flatten)]`, `skip_serializing_if`, untagged or internally
//! tagged enums) silently break it. The `cluster-config` schema uses
//! `skip_serializing_if` to keep its JSON tidy; fields of those types are therefore
//! wrapped with [`json_field`], which stores them as a JSON string inside bincode.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Upper bound on one decoded message or stored value. bincode checks claimed
/// lengths against it before allocating, so a hostile length prefix cannot make us
/// reserve gigabytes. It must exceed the largest legitimate message: an
/// append-entries batch (`max_payload_entries` commands) or one snapshot chunk.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Encoding or decoding failed. Decoding errors mean the bytes did not come from a
/// compatible peer or file; the message says where bincode gave up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CodecError {
    #[error("encode failed: {0}")]
    Encode(String),
    #[error("decode failed: {0}")]
    Decode(String),
    #[error("decode failed: {0} unexpected trailing bytes")]
    TrailingBytes(usize),
}

/// Encodes `value` with the crate's one bincode configuration.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a whole buffer. Trailing bytes are an error: a message that decodes from
/// a prefix is as suspect as one that does not decode at all.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, config())
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// `#[serde(with = "crate::codec::json_field")]` for fields whose types are not
/// bincode-safe (see the module docs). Human-readable formats (JSON for the admin
/// API, logs) see the value as-is; binary formats get it as one JSON string.
pub mod json_field {
    use serde::de::{DeserializeOwned, Error as _};
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            value.serialize(s)
        } else {
            let text = serde_json::to_string(value).map_err(S::Error::custom)?;
            s.serialize_str(&text)
        }
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        if d.is_human_readable() {
            T::deserialize(d)
        } else {
            let text = String::deserialize(d)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::command::{AdminToken, ApiClient, ApiKey, Command, Response, SecretHash};
    use crate::state::SigningKey;
    use crate::{NodeId, TypeConfig};
    use cluster_config::schema::{CircuitBreakerSpec, GatewaySpec, RouteSpec, ServiceSpec};
    use openraft::error::{
        Fatal, ForwardToLeader, InstallSnapshotError, RaftError, SnapshotMismatch,
    };
    use openraft::raft::{
        AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest,
        InstallSnapshotResponse, VoteRequest, VoteResponse,
    };
    use openraft::{
        BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta,
        StoredMembership, Vote,
    };
    use std::collections::{BTreeMap, BTreeSet};
    use std::fmt::Debug;

    /// Some openraft RPC types have no `PartialEq`; equal `Debug` output and equal
    /// re-encoded bytes are the next best thing and catch any lost field.
    fn round_trip<T: Serialize + DeserializeOwned + Debug>(value: &T) {
        let bytes = encode(value).expect("encode");
        let back: T = decode(&bytes).expect("decode");
        assert_eq!(format!("{back:?}"), format!("{value:?}"));
        assert_eq!(encode(&back).expect("re-encode"), bytes);
        // Every strict prefix must fail cleanly, never panic.
        for cut in 0..bytes.len() {
            assert!(decode::<T>(&bytes[..cut]).is_err(), "prefix {cut} decoded");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode::<T>(&longer).is_err(), "trailing byte accepted");
    }

    fn log_id(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    fn sample_spec() -> GatewaySpec {
        let mut spec = GatewaySpec::default();
        spec.services.insert(
            "users".into(),
            ServiceSpec {
                upstreams: vec!["http://127.0.0.1:9001".into()],
                timeout: Some("5s".into()),
                circuit_breaker: Some(CircuitBreakerSpec {
                    error_rate: Some(0.25),
                    ..Default::default()
                }),
                ..Default::default()
            },
        );
        spec.routes.push(RouteSpec {
            path: "/api/users/:id".into(),
            service: "users".into(),
            methods: vec!["GET".into()],
            ..Default::default()
        });
        spec
    }

    pub(crate) fn sample_commands() -> Vec<Command> {
        let hash = SecretHash::of(b"s3cret");
        vec![
            Command::ReplaceGateway {
                spec: sample_spec(),
            },
            Command::PutService {
                name: "users".into(),
                spec: ServiceSpec::default(),
            },
            Command::DeleteService {
                name: "users".into(),
            },
            Command::PutRoute {
                route: RouteSpec {
                    id: Some("r1".into()),
                    path: "/x".into(),
                    service: "users".into(),
                    ..Default::default()
                },
            },
            Command::DeleteRoute { id: "/x".into() },
            Command::PutClient {
                client: ApiClient {
                    id: "c1".into(),
                    name: "Client".into(),
                    roles: vec!["admin".into()],
                    scopes: vec![],
                    secret_hash: hash.clone(),
                },
            },
            Command::DeleteClient { id: "c1".into() },
            Command::PutApiKey {
                key: ApiKey {
                    id: "k1".into(),
                    client_id: "c1".into(),
                    key_hash: hash.clone(),
                    revoked: false,
                },
            },
            Command::RevokeApiKey { id: "k1".into() },
            Command::DeleteApiKey { id: "k1".into() },
            Command::PutAdminToken {
                token: AdminToken {
                    id: "t1".into(),
                    token_hash: hash,
                },
            },
            Command::DeleteAdminToken { id: "t1".into() },
            Command::SeedSigningKey {
                key: crate::state::signing::tests::key("kid-a", 1_700_000_000),
            },
            Command::RotateSigningKey {
                key: SigningKey {
                    // Bytes above 0x7f: a DER key is full of them.
                    private_pkcs8: (0..=255u8).collect(),
                    ..crate::state::signing::tests::key("kid-b", 1_700_000_100)
                },
                now: 1_700_000_100,
                verify_for_secs: 3600,
            },
        ]
    }

    /// The signing-key commands were appended after `SeedGateway` (position 12),
    /// so older entries keep their numbers; their fields, retired or not, survive.
    #[test]
    fn signing_key_commands_are_appended_and_round_trip() {
        let mut key = crate::state::signing::tests::key("kid-c", 5);
        key.retired_at = Some(7);
        key.verify_until = Some(u64::MAX);
        let seed = Command::SeedSigningKey { key: key.clone() };
        let rotate = Command::RotateSigningKey {
            key,
            now: u64::MAX,
            verify_for_secs: 0,
        };
        for (cmd, position) in [(seed, 13u8), (rotate, 14u8)] {
            round_trip(&cmd);
            let bytes = encode(&cmd).expect("encode");
            assert_eq!(bytes[0], position, "{cmd:?}");
            let back: Command = decode(&bytes).expect("decode");
            assert_eq!(back, cmd);
        }
        let gateway = encode(&Command::SeedGateway {
            spec: GatewaySpec::default(),
        })
        .expect("encode");
        assert_eq!(gateway[0], 12);
    }

    #[test]
    fn commands_and_responses_round_trip() {
        for cmd in sample_commands() {
            round_trip(&cmd);
        }
        round_trip(&Response::Applied);
        round_trip(&Response::NotFound {
            kind: "route".into(),
            id: "/x".into(),
        });
        round_trip(&Response::Rejected {
            problems: vec![crate::command::Problem {
                path: "routes[0].service".into(),
                message: "unknown service".into(),
            }],
        });
    }

    #[test]
    fn raft_rpc_types_round_trip() {
        let vote = Vote::new_committed(3, 1);
        let members = BTreeMap::from([
            (1u64, BasicNode::new("127.0.0.1:9080")),
            (2u64, BasicNode::new("127.0.0.1:9081")),
        ]);
        let membership = Membership::new(vec![BTreeSet::from([1, 2])], members);
        let entries: Vec<Entry<TypeConfig>> = vec![
            Entry {
                log_id: log_id(3, 5),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(3, 6),
                payload: EntryPayload::Membership(membership.clone()),
            },
            Entry {
                log_id: log_id(3, 7),
                payload: EntryPayload::Normal(Command::ReplaceGateway {
                    spec: sample_spec(),
                }),
            },
        ];
        round_trip(&AppendEntriesRequest::<TypeConfig> {
            vote,
            prev_log_id: Some(log_id(2, 4)),
            entries,
            leader_commit: Some(log_id(2, 4)),
        });
        for resp in [
            AppendEntriesResponse::Success,
            AppendEntriesResponse::PartialSuccess(Some(log_id(3, 6))),
            AppendEntriesResponse::Conflict,
            AppendEntriesResponse::HigherVote(Vote::new(4, 2)),
        ] {
            round_trip(&resp);
        }
        round_trip(&VoteRequest::new(Vote::new(4, 2), Some(log_id(3, 7))));
        round_trip(&VoteResponse::new(
            Vote::new(4, 2),
            Some(log_id(3, 7)),
            true,
        ));
        round_trip(&InstallSnapshotRequest::<TypeConfig> {
            vote,
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3, 7)),
                last_membership: StoredMembership::new(Some(log_id(3, 6)), membership),
                snapshot_id: "3-7-1".into(),
            },
            offset: 0,
            data: vec![1, 2, 3, 4],
            done: true,
        });
        round_trip(&InstallSnapshotResponse { vote });

        // What the server sends back: the Raft call's whole result, errors included,
        // so the client can hand openraft a `RemoteError`.
        round_trip::<Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>>(&Ok(
            AppendEntriesResponse::Success,
        ));
        round_trip::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(&Err(RaftError::Fatal(
            Fatal::Stopped,
        )));
        round_trip::<
            Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
        >(&Err(RaftError::APIError(
            InstallSnapshotError::SnapshotMismatch(SnapshotMismatch {
                expect: openraft::SnapshotSegmentId {
                    id: "a".into(),
                    offset: 0,
                },
                got: openraft::SnapshotSegmentId {
                    id: "b".into(),
                    offset: 3,
                },
            }),
        )));
        round_trip::<ForwardToLeader<NodeId, BasicNode>>(&ForwardToLeader::new(
            2,
            BasicNode::new("127.0.0.1:9081"),
        ));
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        // A deterministic xorshift stream: random garbage of many lengths, decoded as
        // every type a peer or a file can hand us.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..2000 {
            let len = (next() % 96) as usize + round % 3;
            let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let _ = decode::<AppendEntriesRequest<TypeConfig>>(&bytes);
            let _ = decode::<InstallSnapshotRequest<TypeConfig>>(&bytes);
            let _ = decode::<VoteRequest<NodeId>>(&bytes);
            let _ = decode::<Command>(&bytes);
            let _ = decode::<crate::state::ClusterState>(&bytes);
            let _ = decode::<Result<VoteResponse<NodeId>, RaftError<NodeId>>>(&bytes);
        }
        // A length prefix claiming ~2^60 bytes must be refused, not allocated.
        let huge = [0xFDu8, 0, 0, 0, 0, 0, 0, 0, 0x10];
        assert!(decode::<Vec<u8>>(&huge).is_err());
        assert!(decode::<String>(&huge).is_err());
        // A hash that is not 64 hex characters is not a hash.
        let not_a_hash = encode("plaintext-password").expect("encode");
        assert!(decode::<SecretHash>(&not_a_hash).is_err());
    }
}
