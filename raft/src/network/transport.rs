//! One awc client on its own thread, shared by every peer connection.

use awc::http::header::HeaderValue;
use bytes::Bytes;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Timeouts and pool limits for Raft RPC.
#[derive(Debug, Clone)]
pub struct TransportSettings {
    /// TCP connect (incl. DNS) timeout. Short, so an unreachable peer is reported
    /// as `Unreachable` quickly and elections are not held up by a dead node.
    pub connect_timeout: Duration,
    /// Upper bound on any one request; openraft also passes a per-RPC deadline,
    /// and the shorter of the two applies.
    pub request_timeout: Duration,
    /// Total simultaneous connections (all peers). Raft keeps at most a couple of
    /// requests in flight per peer, so this is generous.
    pub pool_limit: usize,
    /// Jobs that may wait for the transport thread before senders are slowed down.
    pub queue: usize,
    /// Peers are called over `https` with this client config (the cluster CA,
    /// and this node's certificate when the admin listeners require one); `None`
    /// is plain `http`.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

impl Default for TransportSettings {
    fn default() -> Self {
        TransportSettings {
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(10),
            pool_limit: 32,
            queue: 1024,
            tls: None,
        }
    }
}

/// Why an RPC got no HTTP answer. `Connect` means the peer could not be reached at
/// all (openraft backs off from `Unreachable` peers); the rest are network errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("cannot connect to {url}: {message}")]
    Connect { url: String, message: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("request to {url} failed: {message}")]
    Failed { url: String, message: String },
    #[error("raft transport thread has stopped")]
    Stopped,
}

struct Job {
    url: String,
    secret: HeaderValue,
    body: Vec<u8>,
    timeout: Duration,
    reply: oneshot::Sender<Result<(u16, Bytes), TransportError>>,
}

/// A `Send + Sync` handle to the transport thread; clone freely. The thread exits
/// when the last handle is dropped.
#[derive(Clone)]
pub struct Transport {
    jobs: mpsc::Sender<Job>,
    scheme: &'static str,
}

impl Transport {
    /// Starts the transport thread.
    pub fn start(settings: TransportSettings) -> std::io::Result<Transport> {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let scheme = if settings.tls.is_some() {
            "https"
        } else {
            "http"
        };
        std::thread::Builder::new()
            .name("sluice-raft-net".into())
            .spawn(move || {
                let system = actix_rt::System::new();
                system.block_on(run(rx, settings));
            })?;
        Ok(Transport { jobs: tx, scheme })
    }

    /// The URL of `path` on the peer whose admin listener is `addr` (`host:port`).
    pub fn url(&self, addr: &str, path: &str) -> String {
        format!("{}://{addr}{path}", self.scheme)
    }

    /// POSTs `body` to `url` with the cluster secret; returns the status and the
    /// whole response body (bounded by [`crate::codec::MAX_MESSAGE_BYTES`]).
    pub async fn post(
        &self,
        url: String,
        secret: HeaderValue,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), TransportError> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            url,
            secret,
            body,
            timeout,
            reply,
        };
        self.jobs
            .send(job)
            .await
            .map_err(|_| TransportError::Stopped)?;
        answer.await.map_err(|_| TransportError::Stopped)?
    }
}

async fn run(mut jobs: mpsc::Receiver<Job>, settings: TransportSettings) {
    let connector = awc::Connector::new();
    let connector = match settings.tls.clone() {
        Some(tls) => connector.rustls_0_23(tls),
        None => connector,
    };
    let connector = connector
        .timeout(settings.connect_timeout)
        .limit(settings.pool_limit)
        // Keep connections to peers warm between heartbeats, but recycle them so
        // a peer that moved behind the same address is eventually re-resolved.
        .conn_keep_alive(Duration::from_secs(30))
        .conn_lifetime(Duration::from_secs(300));
    let client = awc::Client::builder()
        .connector(connector)
        .timeout(settings.request_timeout)
        .disable_redirects()
        .finish();
    while let Some(job) = jobs.recv().await {
        // Each request runs as its own local task so a slow peer never delays
        // heartbeats to the others.
        let client = client.clone();
        let cap = settings.request_timeout;
        actix_rt::spawn(async move {
            let Job {
                url,
                secret,
                body,
                timeout,
                reply,
            } = job;
            let answer = send(&client, url, secret, body, timeout.min(cap)).await;
            // The caller may have given up (openraft's own deadline); that is fine.
            let _ = reply.send(answer);
        });
    }
}

async fn send(
    client: &awc::Client,
    url: String,
    secret: HeaderValue,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), TransportError> {
    use awc::error::SendRequestError;
    let request = client
        .post(&url)
        .timeout(timeout)
        .insert_header((super::SECRET_HEADER, secret))
        .insert_header(("content-type", "application/octet-stream"));
    let response = request.send_body(body).await;
    let mut response = match response {
        Ok(r) => r,
        Err(SendRequestError::Connect(e)) => {
            return Err(TransportError::Connect {
                url,
                message: e.to_string(),
            })
        }
        Err(SendRequestError::Timeout) => return Err(TransportError::Timeout { url, timeout }),
        Err(e) => {
            return Err(TransportError::Failed {
                url,
                message: e.to_string(),
            })
        }
    };
    let status = response.status().as_u16();
    match response.body().limit(crate::codec::MAX_MESSAGE_BYTES).await {
        Ok(body) => Ok((status, body)),
        Err(e) => Err(TransportError::Failed {
            url,
            message: e.to_string(),
        }),
    }
}
