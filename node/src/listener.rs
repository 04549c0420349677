//! The data-plane listener: actix-web's `HttpServer` pipeline, built by hand so the
//! connection's byte stream can be wrapped in an [`H2Guard`] before HTTP/2 sees it.
//!
//! What `HttpServer::bind_auto_h2c` and `bind_rustls_0_23` do, step for step: accept
//! (actix-server), TLS with ALPN `h2`/`http/1.1` (actix-tls) or a peek at the h2c
//! preface, then actix-http's `HttpService` with an actix-web `App` per worker.
//! The additions: the guard between the socket and the protocol, a deadline on
//! the first bytes (`node.client_header_timeout`: a connection that never sends a
//! byte is closed, where actix would wait for ever on the h2c peek), a count of
//! open connections, and malformed requests counted and logged at debug rather
//! than at ERROR by actix-http.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use actix_http::{
    body::MessageBody, error::DispatchError, HttpService, Protocol, Request, Response,
};
use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{
    fn_service, map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use crate::h2guard::H2Guard;

/// How the data port listens (node config).
pub struct Listen {
    pub addr: SocketAddr,
    pub workers: usize,
    pub backlog: u32,
    pub shutdown_timeout: u64,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keep_alive: Duration,
    /// Time a new connection has to send its first request head
    /// (`node.client_header_timeout`).
    pub client_request_timeout: Duration,
    /// Connections served at once, per worker; beyond it the worker stops
    /// accepting and new connections wait in the kernel's backlog.
    pub max_connections_per_worker: usize,
    /// TLS handshakes in progress at once, per worker.
    pub max_tls_handshakes: usize,
    pub tls: Option<rustls::ServerConfig>,
    pub counters: Counters,
}

/// What the listener counts (see `telemetry::Metrics`).
#[derive(Clone)]
pub struct Counters {
    /// Connections cut for an HTTP/2 flood.
    pub h2_floods: prometheus::IntCounter,
    pub malformed_requests: prometheus::IntCounter,
    pub header_timeouts: prometheus::IntCounter,
    /// Connections open now.
    pub connections: prometheus::IntGauge,
}

impl Counters {
    /// Sorts out how a connection ended. Malformed requests are the client's
    /// business: counted, logged at debug (never at ERROR: any client could flood
    /// the log), and the connection is closed as actix-http closes it.
    fn ended(&self, e: DispatchError) -> DispatchError {
        match &e {
            DispatchError::Parse(err) => {
                self.malformed_requests.inc();
                tracing::debug!(error = %err, "malformed request refused");
            }
            DispatchError::SlowRequestTimeout => {
                self.header_timeouts.inc();
                tracing::debug!("connection sent no complete request head in time");
            }
            other => tracing::debug!(error = %other, "connection ended with an error"),
        }
        e
    }
}

/// Decrements the open-connections gauge when the connection's stream is dropped.
struct Counted<IO> {
    io: IO,
    gauge: prometheus::IntGauge,
}

impl<IO> Counted<IO> {
    fn new(io: IO, gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Counted { io, gauge }
    }
}

impl<IO> Drop for Counted<IO> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Counted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Counted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Binds the data port and returns the running server.
pub fn serve<F, I, S, B>(listen: Listen, factory: F) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: std::fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as actix_service::Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let Listen {
        addr,
        workers,
        backlog,
        shutdown_timeout,
        keep_alive,
        client_request_timeout,
        max_connections_per_worker,
        max_tls_handshakes,
        tls,
        counters,
    } = listen;
    let secure = tls.is_some();
    let builder = Server::build();
    let http = Http {
        stopping: builder.graceful_shutdown_signal(),
        addr,
        secure,
        keep_alive,
        client_request_timeout,
    };
    let builder = builder
        .workers(workers)
        .backlog(backlog)
        .max_concurrent_connections(max_connections_per_worker)
        .shutdown_timeout(shutdown_timeout)
        .disable_signals();
    let builder = match tls {
        None => builder.bind("sluice-data", addr, move || {
            let http = http.clone();
            let counters = counters.clone();
            let ended = counters.clone();
            fn_service(move |io: TcpStream| {
                let counters = counters.clone();
                async move {
                    let io = Counted::new(io, counters.connections.clone());
                    // The h2c prior-knowledge preface, as actix-http's `tcp_auto_h2c`
                    // reads it; a client that sends nothing is not waited for longer
                    // than it would be for its request head.
                    let mut head = [0; 12];
                    match tokio::time::timeout(client_request_timeout, io.io.peek(&mut head)).await
                    {
                        Ok(read) => read?,
                        Err(_) => return Err(DispatchError::SlowRequestTimeout),
                    };
                    let h2 = &head == b"PRI * HTTP/2";
                    let _ = io.io.set_nodelay(true);
                    let peer = io.io.peer_addr().ok();
                    let proto = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                    let floods = counters.h2_floods.clone();
                    Ok::<_, DispatchError>((H2Guard::new(io, h2, floods), proto, peer))
                }
            })
            .and_then(http.service(factory()))
            .map_err(move |e| ended.ended(e))
        })?,
        Some(mut config) => {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let config = Arc::new(config);
            actix_tls::accept::max_concurrent_tls_connect(max_tls_handshakes);
            builder.bind("sluice-data-tls", addr, move || {
                let http = http.clone();
                let floods = counters.h2_floods.clone();
                let gauge = counters.connections.clone();
                let ended = counters.clone();
                let mut acceptor = Acceptor::new((*config).clone());
                acceptor.set_handshake_timeout(Duration::from_secs(3));
                acceptor
                    .map_init_err(|_| ())
                    .map_err(|e| tracing::debug!("TLS handshake failed: {e:?}"))
                    .and_then(fn_service(move |io: TlsStream<TcpStream>| {
                        let floods = floods.clone();
                        let gauge = gauge.clone();
                        async move {
                            let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
                            let _ = io.get_ref().0.set_nodelay(true);
                            let peer = io.get_ref().0.peer_addr().ok();
                            let proto = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                            let io = Counted::new(io, gauge);
                            Ok::<_, ()>((H2Guard::new(io, h2, floods), proto, peer))
                        }
                    }))
                    .and_then(http.service(factory()).map_err(move |e| {
                        ended.ended(e);
                    }))
            })?
        }
    };
    Ok(builder.run())
}

/// What every connection's `HttpService` is built with.
#[derive(Clone)]
struct Http {
    /// Resolves when the server starts a graceful stop: kept-alive HTTP/1.1
    /// connections are then closed after their current response and HTTP/2 ones
    /// get GOAWAY, as actix-web's `HttpServer` does.
    stopping: GracefulShutdownSignal,
    addr: SocketAddr,
    secure: bool,
    keep_alive: Duration,
    client_request_timeout: Duration,
}

impl Http {
    /// actix-http's service over one worker's `App`, for connections of type `T`.
    fn service<T, I, S, B>(
        &self,
        app: I,
    ) -> impl ServiceFactory<
        (T, Protocol, Option<SocketAddr>),
        Config = (),
        Response = (),
        Error = DispatchError,
        InitError = (),
    >
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<actix_web::Error> + 'static,
        S::InitError: std::fmt::Debug,
        S::Response: Into<Response<B>> + 'static,
        <S::Service as actix_service::Service<Request>>::Future: 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let stopping = self.stopping.clone();
        let builder = HttpService::build()
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .h1_allow_half_closed(true)
            .keep_alive(self.keep_alive)
            .client_request_timeout(self.client_request_timeout)
            .client_disconnect_timeout(Duration::from_secs(1))
            .local_addr(self.addr);
        let builder = if self.secure {
            builder.secure()
        } else {
            builder
        };
        // actix-web's own `AppConfig::new` is crate-private; nothing here reads the
        // host or scheme it holds (the proxy knows whether it listens with TLS).
        let app = app.into_factory().map_err(|e| e.into().error_response());
        builder.finish(map_config(app, |_| AppConfig::default()))
    }
}
