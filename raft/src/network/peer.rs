//! openraft's network traits on top of [`Transport`].

use super::transport::{Transport, TransportError};
use crate::codec;
use crate::{NodeId, TypeConfig};
use awc::http::header::HeaderValue;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::error::Error;

/// The factory openraft owns: hands out a [`PeerClient`] per target, all sharing
/// one transport.
#[derive(Clone)]
pub struct HttpNetwork {
    transport: Transport,
    secret: HeaderValue,
}

#[derive(Debug, thiserror::Error)]
#[error("the cluster secret must be printable ASCII without line breaks")]
pub struct BadSecret;

impl HttpNetwork {
    pub fn new(transport: Transport, secret: &str) -> Result<HttpNetwork, BadSecret> {
        let mut secret = HeaderValue::from_str(secret).map_err(|_| BadSecret)?;
        // Keeps the secret out of any header dump awc or a debug log might make.
        secret.set_sensitive(true);
        Ok(HttpNetwork { transport, secret })
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            node: node.clone(),
            transport: self.transport.clone(),
            secret: self.secret.clone(),
        }
    }
}

/// RPCs to one peer. Holds no connection of its own: the pool is in the transport.
pub struct PeerClient {
    target: NodeId,
    node: BasicNode,
    transport: Transport,
    secret: HeaderValue,
}

/// A non-200 answer, kept as a network error: the peer did not run the RPC.
#[derive(Debug, thiserror::Error)]
#[error("peer {target} answered HTTP {status}: {body}")]
struct HttpStatus {
    target: NodeId,
    status: u16,
    body: String,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &self,
        path: &str,
        request: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: Error + DeserializeOwned,
    {
        let body = codec::encode(request).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let url = self
            .transport
            .url(&self.node.addr, &format!("/raft/{path}"));
        let answer = self
            .transport
            .post(url, self.secret.clone(), body, option.hard_ttl())
            .await;
        // Every failure to get an answer, and every refusal, is `Unreachable`:
        // openraft backs off from those (see `backoff`), where a `NetworkError` is
        // retried at once — with a bad address or a wrong secret that was a tight
        // loop of RPCs and log lines.
        let (status, bytes) = match answer {
            Ok(ok) => ok,
            Err(e @ TransportError::Stopped) => {
                return Err(RPCError::Network(NetworkError::new(&e)));
            }
            Err(e) => return Err(RPCError::Unreachable(Unreachable::new(&e))),
        };
        if status != 200 {
            let e = HttpStatus {
                target: self.target,
                status,
                body: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            };
            return Err(RPCError::Unreachable(Unreachable::new(&e)));
        }
        // The peer sends back openraft's whole result, so its refusals (higher
        // vote, shut down, snapshot mismatch) reach openraft as remote errors.
        let result: Result<Resp, E> =
            codec::decode(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| {
            RPCError::RemoteError(RemoteError::new_with_node(
                self.target,
                self.node.clone(),
                e,
            ))
        })
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    /// After a peer failed: 250 ms, doubling to 2 s, until an RPC succeeds (a
    /// restarted peer is caught up within 2 s of coming back).
    fn backoff(&self) -> openraft::network::Backoff {
        let delays = (0..3)
            .map(|i| std::time::Duration::from_millis(250 << i))
            .chain(std::iter::repeat(std::time::Duration::from_secs(2)));
        openraft::network::Backoff::new(delays)
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("append", &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call("snapshot", &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call("vote", &rpc, &option).await
    }
}
