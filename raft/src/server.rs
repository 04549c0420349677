//! The receiving side of Raft RPC: `POST` endpoints under `/raft` on the admin
//! listener, mounted by the node with [`configure`]: openraft's own (append, vote,
//! snapshot) and the three a follower uses to reach the leader on behalf of a
//! caller (`write` for commands, `membership` for voter changes, `read_index` for
//! linearizable reads). There is no other path from a follower to the leader.
//!
//! Every request must carry the cluster secret in `X-Sluice-Cluster-Secret`; it is
//! checked (in constant time) before the body is even read, so an unauthenticated
//! caller cannot make us buffer 64 MiB or touch Raft. Outcomes:
//! - wrong or missing secret: 401, a warning in the log, nothing else happens;
//! - body that does not decode: 400, nothing else happens;
//! - otherwise 200 with the codec-encoded `Result` of the Raft call (openraft's own
//!   errors travel inside it; see [`crate::network`]).

use crate::codec;
use crate::command::Command;
use crate::network::SECRET_HEADER;
use crate::node::MembershipChange;
use crate::{NodeId, Raft, TypeConfig};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Paths of the leader-side endpoints, as the forwarding side addresses them.
pub(crate) const WRITE: &str = "/raft/write";
pub(crate) const MEMBERSHIP: &str = "/raft/membership";
pub(crate) const READ_INDEX: &str = "/raft/read_index";

/// What the handlers need: the local Raft and the expected secret's digest.
pub struct RaftRpc {
    raft: Raft,
    /// How long a forwarded write (`/raft/write`) may wait for its commit.
    write_timeout: std::time::Duration,
    /// SHA-256 of the cluster secret; `None` when no secret is configured, in which
    /// case every RPC is refused (a one-node cluster needs none).
    secret_digest: Option<[u8; 32]>,
}

impl RaftRpc {
    pub fn new(raft: Raft, secret: &str, write_timeout: std::time::Duration) -> RaftRpc {
        RaftRpc {
            raft,
            write_timeout,
            secret_digest: (!secret.is_empty()).then(|| Sha256::digest(secret.as_bytes()).into()),
        }
    }

    /// Comparing fixed-length digests with `ct_eq` means neither the secret's
    /// length nor the position of the first wrong byte shows in response timing.
    fn authenticated(&self, req: &HttpRequest) -> bool {
        let Some(expected) = &self.secret_digest else {
            return false;
        };
        let Some(presented) = req.headers().get(SECRET_HEADER) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        presented.ct_eq(expected).into()
    }
}

/// Mounts the `/raft/*` endpoints. Use inside the admin
/// `HttpServer::new` closure: `App::new().configure(server::configure(rpc.clone()))`.
pub fn configure(
    rpc: web::Data<RaftRpc>,
) -> impl Fn(&mut web::ServiceConfig) + Clone + Send + 'static {
    move |cfg: &mut web::ServiceConfig| {
        cfg.service(
            web::scope("/raft")
                .app_data(rpc.clone())
                .route("/append", web::post().to(append))
                .route("/vote", web::post().to(vote))
                .route("/snapshot", web::post().to(snapshot))
                .route("/write", web::post().to(write))
                .route("/membership", web::post().to(membership))
                .route("/read_index", web::post().to(read_index)),
        );
    }
}

async fn append(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let msg: AppendEntriesRequest<TypeConfig> = match admit(&rpc, &req, body).await {
        Ok(msg) => msg,
        Err(refusal) => return refusal,
    };
    reply(&rpc.raft.append_entries(msg).await)
}

async fn vote(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let msg: VoteRequest<NodeId> = match admit(&rpc, &req, body).await {
        Ok(msg) => msg,
        Err(refusal) => return refusal,
    };
    reply(&rpc.raft.vote(msg).await)
}

async fn snapshot(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let msg: InstallSnapshotRequest<TypeConfig> = match admit(&rpc, &req, body).await {
        Ok(msg) => msg,
        Err(refusal) => return refusal,
    };
    reply(&rpc.raft.install_snapshot(msg).await)
}

/// A write a follower forwarded on behalf of an admin: proposed here if this node
/// leads, else answered with `ForwardToLeader` / `NoLeader` for the follower.
async fn write(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let command: Command = match admit(&rpc, &req, body).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    reply(&crate::node::write_local(&rpc.raft, rpc.write_timeout, command).await)
}

/// A voter change a follower forwarded: made here if this node leads.
async fn membership(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let change: MembershipChange = match admit(&rpc, &req, body).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    reply(&crate::node::change_membership_local(&rpc.raft, change).await)
}

/// A follower's request for the read index of a linearizable read.
async fn read_index(rpc: web::Data<RaftRpc>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    let (): () = match admit(&rpc, &req, body).await {
        Ok(c) => c,
        Err(refusal) => return refusal,
    };
    reply(&crate::node::read_index_local(&rpc.raft).await)
}

/// Authenticates, then reads and decodes the body; any failure is the response.
async fn admit<T: DeserializeOwned>(
    rpc: &RaftRpc,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<T, HttpResponse> {
    if !rpc.authenticated(req) {
        tracing::warn!(
            peer = ?req.peer_addr(),
            path = req.path(),
            "raft rpc refused: missing or wrong cluster secret"
        );
        return Err(HttpResponse::Unauthorized().body("cluster secret required"));
    }
    let bytes = read_body(body).await.map_err(|message| {
        tracing::warn!(peer = ?req.peer_addr(), path = req.path(), %message, "raft rpc body unreadable");
        HttpResponse::BadRequest().body(message)
    })?;
    codec::decode(&bytes).map_err(|e| {
        tracing::warn!(peer = ?req.peer_addr(), path = req.path(), error = %e, "raft rpc body malformed");
        HttpResponse::BadRequest().body(e.to_string())
    })
}

async fn read_body(mut body: web::Payload) -> Result<Bytes, String> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if buf.len() + chunk.len() > codec::MAX_MESSAGE_BYTES {
            return Err(format!("body exceeds {} bytes", codec::MAX_MESSAGE_BYTES));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

fn reply<T: Serialize>(result: &T) -> HttpResponse {
    match codec::encode(result) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/octet-stream")
            .body(bytes),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode raft rpc reply");
            HttpResponse::InternalServerError().body(e.to_string())
        }
    }
}
