//! The data-plane listener: accept and worker threads from actix-server, TLS with
//! ALPN `h2`/`http/1.1` (actix-tls) or a peek at the h2c preface, then hyper's
//! HTTP/1.1 or HTTP/2 server connection over the worker's handler (`server.rs`).
//!
//! hyper rather than actix-http: the same request answered costs about 1.2 us less
//! CPU (`scripts/bench-answer.sh`), and hyper's server sends response trailers
//! (gRPC), which actix-http cannot. Each connection runs on its worker's thread (a
//! local task; HTTP/2 streams are local tasks too), so the handler shares the
//! worker's state without locks.
//!
//! Between the socket and the protocol sits a [`Conn`], which times request heads
//! (`node.client_header_timeout`, on every head, not only the first) and HTTP/1.1
//! keep-alive. Also here: a deadline on the first bytes (a connection that never
//! sends a byte is closed), a count of open connections, malformed requests
//! counted and logged at debug (any client could flood an ERROR log), and the
//! graceful stop ([`WorkerStop`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use actix_server::{GracefulShutdownSignal, Server};
use actix_service::{fn_service, ServiceFactoryExt};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::rt::net::TcpStream;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::body::Response;

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
    /// HTTP/2 connections cut for a flood (h2's GOAWAY with ENHANCE_YOUR_CALM:
    /// empty DATA frames, rapid resets, CONTINUATION floods and the like).
    pub h2_floods: prometheus::IntCounter,
    pub malformed_requests: prometheus::IntCounter,
    pub header_timeouts: prometheus::IntCounter,
    /// Connections open now.
    pub connections: prometheus::IntGauge,
}

impl Counters {
    /// Sorts out how a connection ended. Malformed requests are the client's
    /// business: counted, logged at debug, and answered 400 (431 for a head too
    /// large) by hyper, which then closes the connection.
    fn ended(&self, e: hyper::Error) {
        if e.is_parse() || e.is_parse_too_large() {
            self.malformed_requests.inc();
            tracing::debug!(error = %e, "malformed request refused");
        } else if is_h2_flood(&e) {
            self.h2_floods.inc();
            tracing::debug!(error = %e, "HTTP/2 connection cut for a flood");
        } else {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    }
}

/// Whether h2 ended the connection with its own GOAWAY for ENHANCE_YOUR_CALM:
/// the peer flooded it (h2 0.4.16 and later bound empty DATA frames, resets and
/// header fragments per connection).
fn is_h2_flood(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return h2.is_go_away()
                && !h2.is_remote()
                && h2.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM);
        }
        source = s.source();
    }
    false
}

/// Counts a connection in `gateway_connections` from accept to close.
struct Open(prometheus::IntGauge);

impl Open {
    fn new(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Open(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Whether a request of an HTTP/1.1 connection is being handled, and the
/// connection's keep-alive clock, shared between the connection's byte stream
/// ([`Conn`]) and the proxy's handler (through [`ConnInfo`]).
pub struct HeadClock {
    busy: Cell<u32>,
    /// The route timeout's timer for the request being handled (one at a time on
    /// an HTTP/1.1 connection), kept from one request to the next.
    pub request_timer: LazyTimer,
    /// `node.keepalive_timeout` (`None`: keep-alive is off, and hyper closes the
    /// connection after each response).
    idle_timeout: Option<Duration>,
    /// When the connection is closed if nothing arrives (`None`: it is not idle:
    /// no response has ended since the last byte read).
    idle_deadline: Cell<Option<tokio::time::Instant>>,
    idle_timer: LazyTimer,
}

impl HeadClock {
    fn new(keep_alive: Duration) -> HeadClock {
        HeadClock {
            busy: Cell::new(0),
            request_timer: LazyTimer::default(),
            idle_timeout: (!keep_alive.is_zero()).then_some(keep_alive),
            idle_deadline: Cell::new(None),
            idle_timer: LazyTimer::default(),
        }
    }

    /// A response has gone out (or its body has ended) and no request of the
    /// connection is being handled: the keep-alive clock starts, or starts again.
    /// Its timer is registered with `cx`, the connection task's: nothing else may
    /// come to register it, as the response's last bytes may be out already.
    fn start_idle(&self, cx: &mut Context<'_>) {
        let Some(timeout) = self.idle_timeout else {
            return;
        };
        if self.busy.get() > 0 {
            return;
        }
        let deadline = after(timeout);
        self.idle_deadline.set(Some(deadline));
        // Not ready: the deadline is a whole timeout away.
        let _ = self.idle_timer.poll_until(deadline, cx);
    }

    /// A byte arrived: the connection is not idle.
    fn stop_idle(&self) {
        self.idle_deadline.set(None);
    }

    /// Whether the connection has been idle for `keepalive_timeout`.
    fn idle_expired(&self, cx: &mut Context<'_>) -> bool {
        match self.idle_deadline.get() {
            Some(deadline) => self.idle_timer.poll_until(deadline, cx).is_ready(),
            None => false,
        }
    }
}

/// A timer kept for the life of a connection and used for one deadline after
/// another. Deadlines mostly grow (now + a fixed timeout), so while it is set for
/// an earlier deadline it is left alone: it then runs out early and is set again
/// for the current one. A deadline costs no allocation and, normally, no timer
/// registration (one per timeout period at most), where a fresh `Sleep` costs a
/// registration and a removal.
#[derive(Default)]
pub struct LazyTimer {
    sleep: RefCell<Option<Pin<Box<tokio::time::Sleep>>>>,
}

impl LazyTimer {
    /// Ready once `deadline` has passed; until then the task is woken by then
    /// (or earlier, and polls again).
    pub fn poll_until(&self, deadline: tokio::time::Instant, cx: &mut Context<'_>) -> Poll<()> {
        let mut slot = self.sleep.borrow_mut();
        let sleep = slot.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if sleep.deadline() > deadline {
            sleep.as_mut().reset(deadline);
        }
        loop {
            if std::future::Future::poll(sleep.as_mut(), cx).is_pending() {
                return Poll::Pending;
            }
            if tokio::time::Instant::now() >= deadline {
                return Poll::Ready(());
            }
            // It ran out for an earlier deadline: set it for this one.
            sleep.as_mut().reset(deadline);
        }
    }

    /// Waits until `deadline`.
    pub async fn sleep_until(&self, deadline: tokio::time::Instant) {
        std::future::poll_fn(|cx| self.poll_until(deadline, cx)).await
    }
}

/// A request of an HTTP/1.1 connection being handled, from the moment it reaches
/// the handler (its head is complete) until its response has gone out, body and
/// all: the head clock does not run meanwhile, so a slow upstream or a long quiet
/// stream does not count against a request pipelined behind it.
pub struct Busy(Rc<HeadClock>);

impl Busy {
    pub fn enter(clock: &Rc<HeadClock>) -> Busy {
        clock.busy.set(clock.busy.get() + 1);
        Busy(clock.clone())
    }

    /// The response's body has ended (`cx`: the connection task's): the request
    /// is done, and if it was the last one in hand the keep-alive clock starts.
    /// A body can end a turn after its last bytes went out, with no write left
    /// to start it.
    pub fn done(self, cx: &mut Context<'_>) {
        let clock = self.0.clone();
        drop(self);
        clock.start_idle(cx);
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
    }
}

/// A data-plane connection's byte stream. For HTTP/1.1 it enforces
/// `client_header_timeout` on every request head: the clock starts at the first
/// byte read while no request of the connection is being handled and nothing has
/// been written since, and stops when a request reaches the handler or a response
/// is written. A kept-alive connection that sends half a head and then holds still
/// is closed like a new one.
///
/// It also times HTTP/1.1 keep-alive (`node.keepalive_timeout`, kept in the
/// [`HeadClock`]): the clock starts when a response has been written, or its
/// body has ended, with no request of the connection being handled, and stops
/// at the next byte read; an idle connection, and one holding half a head that
/// arrived while a response was going out, is closed when it runs out.
struct Conn<IO> {
    io: IO,
    _open: Open,
    /// `Some` for HTTP/1.1 (HTTP/2 heads arrive in frames h2 parses whole).
    clock: Option<Rc<HeadClock>>,
    head_timeout: Duration,
    /// When the head being read must be complete (`None`: no head is being read).
    head_deadline: Option<tokio::time::Instant>,
    /// Kept for the connection's life: a request head normally costs no timer
    /// registration and no allocation.
    head_timer: LazyTimer,
    header_timeouts: prometheus::IntCounter,
}

impl<IO> Conn<IO> {
    fn new(io: IO, open: Open, h1: bool, timeouts: Timeouts, counters: &Counters) -> Self {
        Conn {
            io,
            _open: open,
            clock: h1.then(|| Rc::new(HeadClock::new(timeouts.keep_alive))),
            head_timeout: timeouts.head,
            head_deadline: None,
            head_timer: LazyTimer::default(),
            header_timeouts: counters.header_timeouts.clone(),
        }
    }

    /// Bytes went out: a request head is no longer being waited for, and, when
    /// no request of the connection is being handled, a response is complete (or
    /// finishing) and the keep-alive clock starts.
    fn wrote(&mut self, cx: &mut Context<'_>) {
        self.head_deadline = None;
        if let Some(clock) = &self.clock {
            clock.start_idle(cx);
        }
    }
}

/// A connection's timeouts: `node.client_header_timeout` and
/// `node.keepalive_timeout`.
#[derive(Clone, Copy)]
struct Timeouts {
    head: Duration,
    keep_alive: Duration,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Conn<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let Some(clock) = &this.clock else {
            return polled;
        };
        if buf.filled().len() > before {
            clock.stop_idle();
        }
        if clock.busy.get() > 0 {
            this.head_deadline = None;
            return polled;
        }
        if buf.filled().len() > before && this.head_deadline.is_none() {
            this.head_deadline = Some(after(this.head_timeout));
        }
        if polled.is_pending() {
            if let Some(deadline) = this.head_deadline {
                if this.head_timer.poll_until(deadline, cx).is_ready() {
                    this.head_deadline = None;
                    this.header_timeouts.inc();
                    tracing::debug!("connection sent no complete request head in time");
                    return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
                }
            }
            if clock.idle_expired(cx) {
                tracing::trace!("kept-alive connection idle for keepalive_timeout: closed");
                return Poll::Ready(Err(std::io::ErrorKind::TimedOut.into()));
            }
        }
        polled
    }
}

/// Now plus `d`, or now if that would overflow the clock.
fn after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or(now)
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Conn<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote(cx);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.wrote(cx);
        }
        polled
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

/// What a handler knows of the connection a request came on.
pub struct ConnInfo {
    pub peer: Option<SocketAddr>,
    /// HTTP/1.1: the connection's head and keep-alive clock (see [`Busy`]).
    pub clock: Option<Rc<HeadClock>>,
}

/// A client's request as the handlers see it: its head, and its connection's
/// [`ConnInfo`]. The body travels apart (hyper's `Incoming`).
pub struct ClientRequest {
    pub head: http::request::Parts,
    pub conn: Rc<ConnInfo>,
}

impl ClientRequest {
    pub fn method(&self) -> &http::Method {
        &self.head.method
    }

    pub fn uri(&self) -> &http::Uri {
        &self.head.uri
    }

    pub fn path(&self) -> &str {
        self.head.uri.path()
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.head.headers
    }

    pub fn version(&self) -> http::Version {
        self.head.version
    }

    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.conn.peer
    }

    pub fn head_clock(&self) -> Option<&Rc<HeadClock>> {
        self.conn.clock.as_ref()
    }
}

/// Binds the data port and returns the running server; `factory` makes each
/// worker's handler, which answers every request of the worker's connections.
pub fn serve<F, H, Fut>(listen: Listen, factory: F) -> std::io::Result<Server>
where
    F: Fn() -> H + Send + Clone + 'static,
    H: Fn(http::Request<Incoming>, Rc<ConnInfo>) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
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
    let timeouts = Timeouts {
        head: client_request_timeout,
        keep_alive,
    };
    let builder = Server::build();
    let stopping = builder.graceful_shutdown_signal();
    // One per worker, made on the worker's thread (the handler is not `Send`).
    let worker = move || {
        Rc::new(Worker {
            handler: factory(),
            stop: WorkerStop::start(stopping.clone()),
            h1: h1_builder(keep_alive),
            h2: h2_builder(keep_alive),
            counters: counters.clone(),
            timeouts,
        })
    };
    let builder = builder
        .workers(workers)
        .backlog(backlog)
        .max_concurrent_connections(max_connections_per_worker)
        .shutdown_timeout(shutdown_timeout)
        .disable_signals();
    let builder = match tls {
        None => builder.bind("sluice-data", addr, move || {
            let worker = worker();
            fn_service(move |io: TcpStream| {
                let worker = worker.clone();
                async move {
                    let open = Open::new(worker.counters.connections.clone());
                    // The h2c prior-knowledge preface; a client that sends nothing
                    // is not waited for longer than it would be for its request head.
                    let mut head = [0; 12];
                    match tokio::time::timeout(client_request_timeout, io.peek(&mut head)).await {
                        Ok(read) => read.map_err(|_| ())?,
                        Err(_) => {
                            worker.counters.header_timeouts.inc();
                            tracing::debug!("connection sent no request head in time");
                            return Err(());
                        }
                    };
                    let h2 = &head == b"PRI * HTTP/2";
                    let _ = io.set_nodelay(true);
                    let peer = io.peer_addr().ok();
                    worker.serve(io, open, h2, peer).await
                }
            })
        })?,
        Some(mut config) => {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let config = Arc::new(config);
            actix_tls::accept::max_concurrent_tls_connect(max_tls_handshakes);
            builder.bind("sluice-data-tls", addr, move || {
                let worker = worker();
                let mut acceptor = Acceptor::new((*config).clone());
                acceptor.set_handshake_timeout(Duration::from_secs(3));
                acceptor
                    .map_init_err(|_| ())
                    .map_err(|e| tracing::debug!("TLS handshake failed: {e:?}"))
                    .and_then(fn_service(move |io: TlsStream<TcpStream>| {
                        let worker = worker.clone();
                        async move {
                            let open = Open::new(worker.counters.connections.clone());
                            let h2 = io.get_ref().1.alpn_protocol() == Some(b"h2");
                            let _ = io.get_ref().0.set_nodelay(true);
                            let peer = io.get_ref().0.peer_addr().ok();
                            worker.serve(io, open, h2, peer).await
                        }
                    }))
            })?
        }
    };
    Ok(builder.run())
}

/// HTTP/1.1 as every connection speaks it. Keep-alive: only on or off here, the
/// idle time is [`Conn`]'s to time (hyper's own header timer is off for the same
/// reason: [`Conn`] times every head). Half-closed connections are served (a
/// client may shut its write side and wait for the answer), as before.
fn h1_builder(keep_alive: Duration) -> http1::Builder {
    let mut b = http1::Builder::new();
    b.keep_alive(!keep_alive.is_zero())
        .half_close(true)
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD);
    b
}

/// Bound on an HTTP/1.1 request head (431 beyond it): nginx's default
/// `large_client_header_buffers` allow 4 x 8 KiB per line, Envoy 60 KiB in all.
const MAX_HEAD: usize = 64 * 1024;

/// HTTP/2: an idle connection is pinged every `node.keepalive_timeout` and closed
/// when the ping is not answered within it. A request's headers may take as much
/// as an HTTP/1.1 head (hyper's default is 16 KiB).
fn h2_builder(keep_alive: Duration) -> http2::Builder<LocalExec> {
    let mut b = http2::Builder::new(LocalExec);
    b.timer(TokioTimer::new())
        .max_header_list_size(MAX_HEAD as u32);
    if !keep_alive.is_zero() {
        b.keep_alive_interval(keep_alive)
            .keep_alive_timeout(keep_alive);
    }
    b
}

/// Runs HTTP/2 streams as local tasks of the worker (the handler is not `Send`).
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        actix_rt::spawn(async move {
            fut.await;
        });
    }
}

/// A worker's handler and what its connections share.
struct Worker<H> {
    handler: H,
    stop: Rc<WorkerStop>,
    h1: http1::Builder,
    h2: http2::Builder<LocalExec>,
    counters: Counters,
    timeouts: Timeouts,
}

impl<H, Fut> Worker<H>
where
    H: Fn(http::Request<Incoming>, Rc<ConnInfo>) -> Fut + 'static,
    Fut: Future<Output = Response> + 'static,
{
    /// Serves one connection to its end; on the server's graceful stop, an
    /// HTTP/1.1 connection closes after its current response and an HTTP/2 one
    /// gets GOAWAY.
    async fn serve<IO>(
        self: Rc<Self>,
        io: IO,
        open: Open,
        h2: bool,
        peer: Option<SocketAddr>,
    ) -> Result<(), ()>
    where
        IO: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let io = Conn::new(io, open, !h2, self.timeouts, &self.counters);
        let conn = Rc::new(ConnInfo {
            peer,
            clock: io.clock.clone(),
        });
        let worker = self.clone();
        let service = hyper::service::service_fn(move |req| {
            let answer = (worker.handler)(req, conn.clone());
            async move { Ok::<_, std::convert::Infallible>(answer.await) }
        });
        let io = TokioIo::new(io);
        let stop = StopWait::new(&self.stop);
        let ended = if h2 {
            until_stopped(self.h2.serve_connection(io, service), stop, |c| {
                c.graceful_shutdown()
            })
            .await
        } else {
            until_stopped(self.h1.serve_connection(io, service), stop, |c| {
                c.graceful_shutdown()
            })
            .await
        };
        ended.map_err(|e| self.counters.ended(e))
    }
}

/// Drives a connection to its end, starting its graceful shutdown when `stop`
/// resolves.
async fn until_stopped<C>(
    conn: C,
    stop: StopWait,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut conn = std::pin::pin!(conn);
    let mut stop = std::pin::pin!(stop);
    let mut shutdown = Some(shutdown);
    std::future::poll_fn(|cx| {
        if shutdown.is_some() && stop.as_mut().poll(cx).is_ready() {
            if let Some(shutdown) = shutdown.take() {
                shutdown(conn.as_mut());
            }
        }
        conn.as_mut().poll(cx)
    })
    .await
}

/// One worker's view of the server's graceful stop, for its connections.
///
/// A connection's stop future is polled on every turn of the connection's task,
/// twice or more per request. actix-server's own signal (a tokio `watch`) takes a
/// lock on each of those polls (0.6 % of a proxied request's CPU under `perf`);
/// here such a poll reads a flag. A connection's waker is stored once,
/// and one task per worker waits on the server's signal and wakes them all.
struct WorkerStop {
    stopped: Cell<bool>,
    next_key: Cell<u64>,
    waiting: RefCell<HashMap<u64, Waker>>,
}

impl WorkerStop {
    /// Called on the worker's thread, in its runtime.
    fn start(signal: GracefulShutdownSignal) -> Rc<WorkerStop> {
        let stop = Rc::new(WorkerStop {
            stopped: Cell::new(false),
            next_key: Cell::new(0),
            waiting: RefCell::new(HashMap::new()),
        });
        let worker = Rc::downgrade(&stop);
        actix_rt::spawn(async move {
            signal.notified().await;
            if let Some(stop) = worker.upgrade() {
                stop.stopped.set(true);
                let waiting = stop.waiting.take();
                waiting.into_values().for_each(Waker::wake);
            }
        });
        stop
    }
}

/// A connection's wait for the graceful stop ([`WorkerStop`]).
struct StopWait {
    stop: Rc<WorkerStop>,
    /// The waker registered, and its key; `None` before the first poll.
    registered: Option<(u64, Waker)>,
}

impl StopWait {
    fn new(stop: &Rc<WorkerStop>) -> StopWait {
        StopWait {
            stop: stop.clone(),
            registered: None,
        }
    }
}

impl std::future::Future for StopWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.stop.stopped.get() {
            return Poll::Ready(());
        }
        // A connection's task keeps its waker: after the first poll this is a
        // pointer comparison.
        if let Some((_, waker)) = &self.registered {
            if waker.will_wake(cx.waker()) {
                return Poll::Pending;
            }
        }
        let key = match &self.registered {
            Some((key, _)) => *key,
            None => {
                let key = self.stop.next_key.get();
                self.stop.next_key.set(key + 1);
                key
            }
        };
        self.stop
            .waiting
            .borrow_mut()
            .insert(key, cx.waker().clone());
        self.registered = Some((key, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for StopWait {
    fn drop(&mut self) {
        if let Some((key, _)) = &self.registered {
            self.stop.waiting.borrow_mut().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LazyTimer;
    use std::time::Duration;
    use tokio::time::Instant;

    /// One timer serves a deadline earlier than the one it is set for, and a later
    /// one after running out early: each wait ends at its own deadline.
    #[tokio::test]
    async fn a_lazy_timer_ends_each_wait_at_its_own_deadline() {
        let timer = LazyTimer::default();
        let long = Instant::now() + Duration::from_secs(5);
        // Set for 5 s, then given up on (as when an upstream answers in time).
        let given_up =
            tokio::time::timeout(Duration::from_millis(20), timer.sleep_until(long)).await;
        assert!(given_up.is_err(), "a 5 s wait ended after 20 ms");

        // An earlier deadline than the one it is set for.
        let start = Instant::now();
        timer.sleep_until(start + Duration::from_millis(50)).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(50),
            "ended early: {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(4),
            "waited for the old deadline: {waited:?}"
        );

        // Set for 100 ms, then a later deadline: it runs out early and is set again.
        let start = Instant::now();
        let _ = tokio::time::timeout(
            Duration::from_millis(10),
            timer.sleep_until(start + Duration::from_millis(100)),
        )
        .await;
        timer.sleep_until(start + Duration::from_millis(300)).await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "ended at the earlier deadline: {waited:?}"
        );
    }
}
