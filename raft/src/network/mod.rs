//! The sending side of Raft RPC: openraft's `RaftNetworkFactory` / `RaftNetwork`
//! over HTTP to each peer's admin listener (`POST http://{addr}/raft/{append,vote,
//! snapshot}`), bodies encoded with [`crate::codec`], every request carrying the
//! cluster secret. The same transport carries what a follower sends the leader on
//! a caller's behalf (`/raft/{write,membership,read_index}`, see
//! [`crate::node::RaftNode::write_anywhere`]).
//!
//! Why a dedicated thread: awc's `Client` is `!Send` (it is built on `Rc`), while
//! openraft drives its network futures from tokio tasks that must be `Send`. So one
//! thread runs a single-threaded actix system that owns one pooled awc client
//! ([`transport::Transport`]); the Raft side talks to it through a bounded tokio
//! channel of jobs, each with a oneshot for the reply. One client, one connection
//! pool, for the whole process: never a client per RPC.

mod peer;
mod transport;

pub use peer::{BadSecret, HttpNetwork, PeerClient};
pub use transport::{Transport, TransportError, TransportSettings};

/// Header that carries the cluster secret on every Raft RPC.
pub const SECRET_HEADER: &str = "X-Sluice-Cluster-Secret";

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::error::RPCError;
    use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
    use openraft::raft::VoteRequest;
    use openraft::{BasicNode, Vote};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn dead_peer_is_unreachable_quickly_and_futures_are_send() {
        // Bind then drop a listener: the port is (almost certainly) closed now.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind");
        let transport = Transport::start(TransportSettings::default()).expect("transport");
        let mut factory = HttpNetwork::new(transport, "s").expect("secret");
        let mut peer = factory
            .new_client(2, &BasicNode::new(addr.to_string()))
            .await;
        let started = Instant::now();
        // tokio::spawn proves the RPC future is Send, as openraft requires.
        let result = tokio::spawn(async move {
            peer.vote(
                VoteRequest::new(Vote::new(1, 1), None),
                RPCOption::new(Duration::from_secs(5)),
            )
            .await
        })
        .await
        .expect("join");
        assert!(
            matches!(result, Err(RPCError::Unreachable(_))),
            "{result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn secrets_that_cannot_be_headers_are_refused() {
        let transport = Transport::start(TransportSettings::default()).expect("transport");
        assert!(HttpNetwork::new(transport, "line\nbreak").is_err());
    }
}
