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
//! [`UpstreamBody`] is either empty (bodiless requests) or the client's own body
//! (hyper's server `Incoming`), read in place when hyper's client asks for a chunk
//! ([`ClientBody`], see `proxy::RequestBody`).
//!
//! A request without a body to a plain-HTTP upstream takes the client of
//! [`crate::upstream_h1`] instead, under the same cap; both answer with an
//! [`UpstreamResponse`].

use bytes::Bytes;
use http::header::HeaderMap;
use http::StatusCode;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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

/// The request body as hyper takes it.
pub enum UpstreamBody {
    Empty,
    /// The client's body, read in place ([`ClientBody`]).
    Client {
        length: Option<u64>,
        body: Arc<ClientBody>,
    },
}

/// A client's request body and how its upload is going, shared by the proxy's
/// request and each attempt's [`UpstreamBody`]. The lock is never contended:
/// hyper's connection tasks run on the worker's thread, as the request does, and
/// it is held for one poll at a time.
pub struct ClientBody(Mutex<Upload>);

/// What [`ClientBody`] keeps.
pub struct Upload {
    body: Incoming,
    /// An attempt has asked for the body: it cannot be sent again.
    pub asked: bool,
    /// When the first chunk was asked for, then when the last one went to the
    /// upstream's connection (or the body ended).
    pub last: Option<Instant>,
    /// The upstream's connection asked for the next chunk and the client has not
    /// sent it.
    pub waiting_on_client: bool,
    /// The client's body failed: ended early, malformed, or stalled.
    pub client_failed: bool,
}

impl ClientBody {
    pub fn new(body: Incoming) -> Arc<ClientBody> {
        Arc::new(ClientBody(Mutex::new(Upload {
            body,
            asked: false,
            last: None,
            waiting_on_client: false,
            client_failed: false,
        })))
    }

    pub fn upload(&self) -> MutexGuard<'_, Upload> {
        // Nothing panics while holding it; a poisoned lock's state is still whole.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
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
        let body = match self.get_mut() {
            UpstreamBody::Empty => return Poll::Ready(None),
            UpstreamBody::Client { body, .. } => body,
        };
        let mut up = body.upload();
        if !up.asked {
            up.asked = true;
            up.last = Some(Instant::now());
        }
        loop {
            let polled = Pin::new(&mut up.body).poll_frame(cx);
            up.waiting_on_client = polled.is_pending();
            return match polled {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        up.last = Some(Instant::now());
                        Poll::Ready(Some(Ok(Frame::data(data))))
                    }
                    // The client's trailers are not forwarded.
                    Err(_) => continue,
                },
                Poll::Ready(None) => {
                    up.last = Some(Instant::now());
                    Poll::Ready(None)
                }
                Poll::Ready(Some(Err(_))) => {
                    up.client_failed = true;
                    Poll::Ready(Some(Err(ClientBodyError)))
                }
            };
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, UpstreamBody::Empty)
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Empty => SizeHint::with_exact(0),
            UpstreamBody::Client {
                length: Some(n), ..
            } => SizeHint::with_exact(*n),
            UpstreamBody::Client { .. } => SizeHint::default(),
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
