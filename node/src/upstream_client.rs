//! The proxy's upstream client: hyper 1.x's pooled client (`hyper-util`), HTTP/1.1
//! and, over TLS with ALPN, HTTP/2, with rustls (ring), the webpki roots and
//! `node.upstream_ca_file`'s certificates (`tls::upstream_client_config`). One per
//! data-plane worker, like the actix runtime it runs on, so a connection's task and
//! the requests using it stay on one thread.
//!
//! hyper's pool has no cap of its own: `node.upstream_pool_limit` is a semaphore
//! here, one permit per request from sending until its response body ends (or is
//! dropped), so no more requests — and so no more connections in use — than that are
//! in flight on the worker; the idle pool is capped to the same number.
//!
//! hyper needs a `Send` request body and the client's (actix's `Payload`) is not:
//! [`UpstreamBody`] is either empty (bodiless requests, no task, no channel) or the
//! receiving end of a one-chunk channel fed by a task on this worker, which starts
//! reading the client's body only when hyper first asks for it (see
//! `proxy::RequestBody`).
//!
//! A request without a body to a plain-HTTP upstream takes the client of
//! [`crate::upstream_h1`] instead, under the same cap; both answer with an
//! [`UpstreamResponse`] in actix's types.

use bytes::Bytes;
use http::header::HeaderMap;
use http::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

/// How long an idle upstream connection is kept (and the connect timeout).
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-connection read buffer and write queue bound (hyper's default is ~400 KiB):
/// a streamed body in flight holds at most about this much per direction.
const MAX_BUF: usize = 64 * 1024;

/// One worker's upstream clients and its connection cap.
pub struct UpstreamClient {
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    h1: crate::upstream_h1::Pool,
    slots: Arc<Semaphore>,
}

/// An upstream's response head, and its body.
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: ResponseBody,
}

impl UpstreamClient {
    /// A client holding at most `limit` requests in flight (and idle connections
    /// per upstream). No redirects, no decompression, no default headers, no
    /// client-wide timeout: the proxy applies route timeouts itself.
    pub fn new(limit: usize, tls: rustls::ClientConfig) -> UpstreamClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(limit)
            .pool_timer(TokioTimer::new())
            .http1_max_buf_size(MAX_BUF)
            // The proxy sets `Host` itself.
            .set_host(false)
            .build(https);
        UpstreamClient {
            client,
            h1: crate::upstream_h1::Pool::new(limit),
            slots: Arc::new(Semaphore::new(limit.max(1))),
        }
    }

    /// Sends `req` once a slot is free and waits for the response head. The slot
    /// is held by the response's body.
    pub async fn send(
        &self,
        req: http::Request<UpstreamBody>,
    ) -> Result<UpstreamResponse, hyper_util::client::legacy::Error> {
        let permit = self.slot().await;
        let (head, body) = self.client.request(req).await?.into_parts();
        Ok(UpstreamResponse {
            status: head.status,
            headers: head.headers,
            body: ResponseBody::Hyper {
                body,
                _permit: permit,
            },
        })
    }

    /// Sends a bodiless request to a plain-HTTP upstream on this worker's own
    /// HTTP/1.1 client ([`crate::upstream_h1`]) once a slot is free.
    pub async fn send_h1(
        &self,
        req: crate::upstream_h1::Request<'_>,
    ) -> Result<UpstreamResponse, crate::upstream_h1::Error> {
        let permit = self.slot().await;
        let r = self.h1.send(req, permit).await?;
        Ok(UpstreamResponse {
            status: r.status,
            headers: r.headers,
            body: ResponseBody::H1(r.body),
        })
    }

    async fn slot(&self) -> OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }
}

/// The request body as hyper takes it (`Send`).
pub enum UpstreamBody {
    Empty,
    /// Chunks from the feeding task; `start` tells it hyper has asked, `asked`
    /// tells the proxy the body can no longer be sent again.
    Channel {
        length: Option<u64>,
        start: Option<oneshot::Sender<()>>,
        asked: Arc<AtomicBool>,
        rx: mpsc::Receiver<Result<Bytes, ClientBodyError>>,
    },
}

/// The client's body failed (ended early, malformed): the upstream request is
/// aborted; the proxy answers the client itself.
#[derive(Debug)]
pub struct ClientBodyError;

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the client's request body failed")
    }
}

impl std::error::Error for ClientBodyError {}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            UpstreamBody::Empty => Poll::Ready(None),
            UpstreamBody::Channel {
                start, asked, rx, ..
            } => {
                if let Some(start) = start.take() {
                    asked.store(true, Ordering::Relaxed);
                    let _ = start.send(());
                }
                rx.poll_recv(cx).map(|c| c.map(|r| r.map(Frame::data)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, UpstreamBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Channel {
                length: Some(n), ..
            } => SizeHint::with_exact(*n),
            UpstreamBody::Channel { .. } => SizeHint::default(),
        }
    }
}

/// The upstream's response body (data, and trailers where the upstream sent them
/// over hyper's client), holding its request's slot until it ends or is dropped.
pub enum ResponseBody {
    Hyper {
        body: Incoming,
        _permit: OwnedSemaphorePermit,
    },
    /// It holds its slot itself.
    H1(crate::upstream_h1::Body),
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ResponseBody::H1(body) => body.next_chunk(cx).map(|c| c.map(|r| r.map(Frame::data))),
            ResponseBody::Hyper { body, .. } => Pin::new(body)
                .poll_frame(cx)
                .map(|f| f.map(|r| r.map_err(std::io::Error::other))),
        }
    }
}
