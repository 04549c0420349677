//! The proxy's own HTTP/1.1 client for its commonest request: one without a body,
//! to a plain-HTTP upstream (every GET of the benchmark, and of most APIs).
//!
//! Why not hyper's client here (it carries every other request: bodies, TLS, h2):
//! hyper runs each upstream connection as a task of its own and hands requests and
//! responses to it through channels, and it speaks `http` 1.x where actix speaks
//! 0.2, so every header is converted twice. That came to about 22,000 instructions
//! of the 51,000 a proxied request cost (`scripts/bench-cost.sh`). Here the
//! request's own future writes the head, reads the response head on the same
//! connection and hands actix the body as a stream read off that connection: no
//! task, no channel, response header values sliced out of the bytes read (no copy).
//! The parsing is `httparse`'s (hyper's and actix's parser).
//!
//! Connections are kept per worker and per upstream authority: at most
//! `node.upstream_pool_limit` idle ones, each for at most 30 s, the most recently
//! used first; once a second, those older than that or closed by their upstream
//! are let go. A kept connection the upstream has closed is noticed before use
//! when its close has arrived (a readiness check, no system call), and otherwise
//! by the request failing before any byte of an answer: an idempotent request is
//! then sent once more on a new connection, as hyper's pool does.
//!
//! Response framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and 304; then
//! `Transfer-Encoding` (chunked, or read to the close), then `Content-Length`
//! (values that disagree are an error), then read to the close. A connection is
//! kept only after a complete HTTP/1.1 response without `Connection: close` that
//! ends exactly where the bytes read end.

// The idle and connect timeouts are hyper's client's: one setting for both.
use crate::upstream_client::{CONNECT_TIMEOUT, IDLE_TIMEOUT};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// Bound on a response head (status line and headers), as hyper's buffer bound.
const MAX_HEAD: usize = 64 * 1024;
/// Bound on the header lines of one response head.
const MAX_HEADERS: usize = 128;
/// Bound on a chunk-size line and on the trailer section.
const MAX_CHUNK_LINE: usize = 4 * 1024;
const MAX_TRAILERS: usize = 64 * 1024;
/// Room made in the read buffer before each read (a body chunk is at most this).
const READ_SIZE: usize = 32 * 1024;

/// How often a worker's kept connections are looked over: those idle longer than
/// [`IDLE_TIMEOUT`] and those the upstream has closed are let go, whether or not
/// their upstream gets another request.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One worker's kept connections, by upstream authority (`host:port`).
pub struct Pool {
    hosts: Rc<RefCell<Vec<Rc<Host>>>>,
    max_idle: usize,
    /// The sweeping task is started with the first upstream (in the worker's
    /// runtime) and ends with the pool.
    sweeping: Cell<bool>,
}

/// The kept connections to one authority, oldest first.
struct Host {
    authority: Box<str>,
    idle: RefCell<VecDeque<Idle>>,
    max_idle: usize,
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// A connection and what has been read off it and not yet used.
struct Conn {
    io: TcpStream,
    buf: BytesMut,
}

/// Why a request on this client failed.
#[derive(Debug)]
pub enum Error {
    /// No connection could be made (another target may do).
    Connect(io::Error),
    /// The connection failed, or closed, before a whole response head came.
    Io(io::Error),
    /// What came back is not an HTTP/1.1 response this client accepts.
    Malformed(&'static str),
}

impl Error {
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect(_))
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(e) => write!(f, "connect: {e}"),
            Error::Io(e) => write!(f, "connection: {e}"),
            Error::Malformed(what) => write!(f, "malformed response: {what}"),
        }
    }
}

impl std::error::Error for Error {}

/// A response head and its body still on the connection.
pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Body,
}

/// The request, written out: the request line and headers, up to the blank line.
pub struct Request<'a> {
    pub authority: &'a str,
    pub head: &'a [u8],
    /// A HEAD request: its response has no body, whatever its headers say.
    pub head_only: bool,
    /// It may be sent again when a kept connection turns out closed.
    pub idempotent: bool,
    /// When the proxy sent it (its clock read, saved here): a connection kept idle
    /// for longer than [`IDLE_TIMEOUT`] before then is not used. A wait for the
    /// in-flight cap comes after it, and so can stretch that by as long; a kept
    /// connection the upstream has closed meanwhile is what the retry of an
    /// idempotent request is for.
    pub sent: Instant,
}

impl Pool {
    pub fn new(max_idle: usize) -> Pool {
        Pool {
            hosts: Rc::new(RefCell::new(Vec::new())),
            max_idle,
            sweeping: Cell::new(false),
        }
    }

    /// Sends a bodiless request and waits for the response head. The body holds
    /// `permit` (the worker's in-flight cap) and the connection until it ends.
    pub async fn send(
        &self,
        req: Request<'_>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Response, Error> {
        let host = self.host(req.authority);
        loop {
            let (mut conn, kept) = match host.checkout(req.sent) {
                Some(conn) => (conn, true),
                None => (Conn::connect(req.authority).await?, false),
            };
            match conn.exchange(req.head).await {
                Ok(head) => return head.into_response(conn, req.head_only, host, permit),
                // A kept connection the upstream had closed: nothing was answered.
                Err(Failure::Unanswered(_)) if kept && req.idempotent => continue,
                Err(Failure::Unanswered(e)) => return Err(Error::Io(e)),
                Err(Failure::Other(e)) => return Err(e),
            }
        }
    }

    fn host(&self, authority: &str) -> Rc<Host> {
        let mut hosts = self.hosts.borrow_mut();
        if let Some(h) = hosts.iter().find(|h| &*h.authority == authority) {
            return h.clone();
        }
        let h = Rc::new(Host {
            authority: authority.into(),
            idle: RefCell::new(VecDeque::new()),
            max_idle: self.max_idle,
        });
        hosts.push(h.clone());
        if !self.sweeping.replace(true) {
            actix_rt::spawn(sweep(Rc::downgrade(&self.hosts)));
        }
        h
    }
}

/// Every [`SWEEP_EVERY`], lets go of the kept connections that are too old or
/// closed by their upstream (a socket the upstream closed would otherwise stay in
/// CLOSE_WAIT until its upstream's next request), and forgets upstreams with none
/// left and no response in flight (one a reload removed). Ends with the pool.
async fn sweep(hosts: Weak<RefCell<Vec<Rc<Host>>>>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(hosts) = hosts.upgrade() else { return };
        let now = Instant::now();
        hosts.borrow_mut().retain(|h| {
            let mut idle = h.idle.borrow_mut();
            idle.retain(|k| {
                now.saturating_duration_since(k.since) <= IDLE_TIMEOUT && k.conn.is_open()
            });
            !idle.is_empty() || Rc::strong_count(h) > 1
        });
    }
}

impl Host {
    /// The most recently kept connection that is still open, if any.
    fn checkout(&self, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        while let Some(kept) = idle.pop_back() {
            if now.saturating_duration_since(kept.since) > IDLE_TIMEOUT {
                // The rest were kept earlier still.
                idle.clear();
                return None;
            }
            if kept.conn.is_open() {
                return Some(kept.conn);
            }
        }
        None
    }

    fn checkin(&self, conn: Conn) {
        let mut idle = self.idle.borrow_mut();
        let now = Instant::now();
        while idle
            .front()
            .is_some_and(|k| now.saturating_duration_since(k.since) > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        if idle.len() < self.max_idle {
            idle.push_back(Idle { conn, since: now });
        }
    }
}

/// How an exchange failed.
enum Failure {
    /// Before any byte of an answer: the request may not have been seen.
    Unanswered(io::Error),
    Other(Error),
}

/// What a parsed response head says.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    framing: Framing,
    keep_alive: bool,
}

impl Conn {
    async fn connect(authority: &str) -> Result<Conn, Error> {
        let io = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
            Ok(Ok(io)) => io,
            Ok(Err(e)) => return Err(Error::Connect(e)),
            Err(_) => {
                return Err(Error::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connect timed out",
                )))
            }
        };
        io.set_nodelay(true).map_err(Error::Connect)?;
        Ok(Conn {
            io,
            buf: BytesMut::new(),
        })
    }

    /// Whether a kept connection is still usable: no close (or stray bytes) has
    /// arrived on it. Normally answered from the reactor's readiness, with no
    /// system call.
    fn is_open(&self) -> bool {
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            // Readable: a close, stray bytes, or a stale flag (cleared by the read).
            Poll::Ready(Ok(())) => matches!(
                self.io.try_read(&mut [0u8; 1]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock
            ),
        }
    }

    /// Writes the request and reads the response head (skipping interim 1xx ones).
    async fn exchange(&mut self, request: &[u8]) -> Result<Head, Failure> {
        write_all(&self.io, request)
            .await
            .map_err(Failure::Unanswered)?;
        let mut answered = false;
        loop {
            if !self.buf.is_empty() {
                answered = true;
                if let Some(head) = self.parse_head().map_err(Failure::Other)? {
                    return Ok(head);
                }
                if self.buf.len() >= MAX_HEAD {
                    return Err(Failure::Other(Error::Malformed("response head too large")));
                }
            }
            let n = std::future::poll_fn(|cx| self.poll_fill(cx))
                .await
                .map_err(|e| {
                    if answered {
                        Failure::Other(Error::Io(e))
                    } else {
                        Failure::Unanswered(e)
                    }
                })?;
            if n == 0 {
                let e = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upstream closed the connection before a whole response head",
                );
                return Err(if answered {
                    Failure::Other(Error::Io(e))
                } else {
                    Failure::Unanswered(e)
                });
            }
        }
    }

    /// A whole final response head off the front of the buffer, or `None` when more
    /// bytes are needed. Interim (1xx) heads are dropped.
    fn parse_head(&mut self) -> Result<Option<Head>, Error> {
        loop {
            // Uninitialised slots: nothing is zeroed per response.
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut []);
            let parse = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut parsed,
                &self.buf,
                &mut slots,
            );
            let len = match parse {
                Ok(httparse::Status::Complete(len)) => len,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(Error::Malformed("too many header lines"))
                }
                Err(_) => return Err(Error::Malformed("invalid response head")),
            };
            let code = parsed.code.unwrap_or(0);
            if (100..200).contains(&code) {
                if code == 101 {
                    // Never asked for: the proxy forwards no `Upgrade`.
                    return Err(Error::Malformed("unrequested protocol switch"));
                }
                let _ = self.buf.split_to(len);
                continue;
            }
            let status =
                StatusCode::from_u16(code).map_err(|_| Error::Malformed("invalid status code"))?;
            let base = self.buf.as_ptr() as usize;
            let mut keep_alive = parsed.version == Some(1);
            let mut chunked = None;
            let mut length: Option<u64> = None;
            let mut lines = Vec::with_capacity(parsed.headers.len());
            for h in parsed.headers.iter() {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| Error::Malformed("invalid header name"))?;
                if name == http::header::CONNECTION && has_token(h.value, "close") {
                    keep_alive = false;
                } else if name == http::header::TRANSFER_ENCODING {
                    chunked = Some(last_token_is(h.value, "chunked"));
                } else if name == http::header::CONTENT_LENGTH {
                    let n = content_length(h.value)?;
                    if length.is_some_and(|l| l != n) {
                        return Err(Error::Malformed("conflicting content-length"));
                    }
                    length = Some(n);
                }
                // Where the value lies in the buffer: it is sliced out, not copied.
                let start = h.value.as_ptr() as usize - base;
                lines.push((name, start..start + h.value.len()));
            }
            let head = self.buf.split_to(len).freeze();
            let mut headers = HeaderMap::with_capacity(lines.len());
            for (name, range) in lines {
                // `httparse` admits only what a header value may hold.
                if let Ok(value) = HeaderValue::from_maybe_shared(head.slice(range)) {
                    headers.append(name, value);
                }
            }
            let framing = match (chunked, length) {
                (Some(true), _) => {
                    // Both: the length is ignored, and the connection not kept.
                    keep_alive &= length.is_none();
                    Framing::Chunked(Chunk::Size)
                }
                // Not kept, unless the response turns out to have no body at all
                // (`Head::into_response`).
                (Some(false), _) | (None, None) => Framing::ToClose,
                (None, Some(n)) => Framing::Length(n),
            };
            return Ok(Some(Head {
                status,
                headers,
                framing,
                keep_alive,
            }));
        }
    }

    /// Reads what the socket has into the buffer; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ_SIZE / 4 {
            self.buf.reserve(READ_SIZE);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }
}

impl Head {
    fn into_response(
        self,
        conn: Conn,
        head_only: bool,
        host: Rc<Host>,
        permit: OwnedSemaphorePermit,
    ) -> Result<Response, Error> {
        let bodiless = head_only
            || self.status == StatusCode::NO_CONTENT
            || self.status == StatusCode::NOT_MODIFIED;
        let framing = match self.framing {
            _ if bodiless => Framing::Done,
            Framing::Length(0) => Framing::Done,
            f => f,
        };
        // A body read to the close ends the connection; a 204 or a HEAD answer
        // without a length does not (DELETE -> 204 keeps its connection).
        let keep_alive = self.keep_alive && !matches!(framing, Framing::ToClose);
        let mut body = Body {
            conn: Some(conn),
            framing,
            host: keep_alive.then_some(host),
            trailers: 0,
            _permit: permit,
        };
        body.release_if_done();
        Ok(Response {
            status: self.status,
            headers: self.headers,
            body,
        })
    }
}

/// How the response body is delimited, and how far it has been read.
enum Framing {
    /// This many bytes are still to come.
    Length(u64),
    Chunked(Chunk),
    /// Everything until the upstream closes the connection.
    ToClose,
    Done,
}

enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk: this many data bytes to come.
    Data(u64),
    /// After a chunk's data: its CRLF.
    DataEnd,
    /// After the last chunk: trailer lines up to a blank one (read and dropped).
    Trailers,
}

/// The response body, read off the connection as actix asks for it. At its end
/// the connection goes back to the pool when it can be kept; dropped before its
/// end (the client went away), the connection is closed.
pub struct Body {
    conn: Option<Conn>,
    framing: Framing,
    /// Where the connection goes back to (`None`: it is not kept).
    host: Option<Rc<Host>>,
    /// Trailer bytes read so far.
    trailers: usize,
    _permit: OwnedSemaphorePermit,
}

impl Body {
    /// The whole body, when it has a length and all of it came with the head (the
    /// common small answer): the connection goes back to its pool at once, and
    /// the body needs no polling.
    pub fn take_whole(&mut self) -> Option<Bytes> {
        let Framing::Length(n) = self.framing else {
            return None;
        };
        let conn = self.conn.as_mut()?;
        if conn.buf.len() as u64 != n {
            return None;
        }
        let whole = conn.buf.split().freeze();
        self.framing = Framing::Done;
        self.release_if_done();
        Some(whole)
    }

    /// At the end of the body: the connection back to its pool, if it may be kept
    /// (nothing beyond the response was read).
    fn release_if_done(&mut self) {
        if !matches!(self.framing, Framing::Done) {
            return;
        }
        if let (Some(conn), Some(host)) = (self.conn.take(), self.host.take()) {
            if conn.buf.is_empty() {
                host.checkin(conn);
            }
        }
    }

    pub fn next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let buf = &mut conn.buf;
            match &mut self.framing {
                Framing::Done => return Poll::Ready(None),
                Framing::Length(left) if !buf.is_empty() => {
                    let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
                    let data = buf.split_to(take).freeze();
                    *left -= take as u64;
                    if *left == 0 {
                        self.framing = Framing::Done;
                        self.release_if_done();
                    }
                    return Poll::Ready(Some(Ok(data)));
                }
                Framing::ToClose if !buf.is_empty() => {
                    return Poll::Ready(Some(Ok(buf.split().freeze())));
                }
                Framing::Chunked(state) => match chunk_step(state, buf, &mut self.trailers) {
                    Step::Data(data) => return Poll::Ready(Some(Ok(data))),
                    Step::Again => continue,
                    Step::End => {
                        self.framing = Framing::Done;
                        self.release_if_done();
                        return Poll::Ready(None);
                    }
                    Step::Invalid(what) => {
                        self.conn = None;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            what,
                        ))));
                    }
                    Step::More => {}
                },
                Framing::Length(_) | Framing::ToClose => {}
            }
            // More bytes needed.
            match conn.poll_fill(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) if matches!(self.framing, Framing::ToClose) => {
                    self.conn = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Ok(0)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the end of the body",
                    ))));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }
}

/// What one step of chunked decoding made of the buffer.
enum Step {
    Data(Bytes),
    /// The state moved on: step again.
    Again,
    /// More bytes are needed.
    More,
    End,
    Invalid(&'static str),
}

fn chunk_step(state: &mut Chunk, buf: &mut BytesMut, trailers: &mut usize) -> Step {
    match state {
        Chunk::Size => {
            let size = match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((len, size))) => {
                    let _ = buf.split_to(len);
                    size
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                    return Step::Invalid("chunk-size line too long")
                }
                Ok(httparse::Status::Partial) => return Step::More,
                Err(_) => return Step::Invalid("invalid chunk size"),
            };
            *state = if size == 0 {
                Chunk::Trailers
            } else {
                Chunk::Data(size)
            };
            Step::Again
        }
        Chunk::Data(_) if buf.is_empty() => Step::More,
        Chunk::Data(left) => {
            let take = usize::try_from(*left).map_or(buf.len(), |l| l.min(buf.len()));
            let data = buf.split_to(take).freeze();
            *left -= take as u64;
            if *left == 0 {
                *state = Chunk::DataEnd;
            }
            Step::Data(data)
        }
        Chunk::DataEnd if buf.len() < 2 => Step::More,
        Chunk::DataEnd => {
            if &buf[..2] != b"\r\n" {
                return Step::Invalid("chunk data not followed by CRLF");
            }
            let _ = buf.split_to(2);
            *state = Chunk::Size;
            Step::Again
        }
        Chunk::Trailers => {
            let Some(end) = line_end(buf) else {
                return if *trailers + buf.len() > MAX_TRAILERS {
                    Step::Invalid("trailer section too large")
                } else {
                    Step::More
                };
            };
            let _ = buf.split_to(end + 2);
            if end == 0 {
                return Step::End;
            }
            *trailers += end + 2;
            if *trailers > MAX_TRAILERS {
                return Step::Invalid("trailer section too large");
            }
            Step::Again
        }
    }
}

/// Where the first CRLF starts.
fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n")
}

fn content_length(value: &[u8]) -> Result<u64, Error> {
    let text = std::str::from_utf8(value)
        .ok()
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()));
    text.and_then(|t| t.parse().ok())
        .ok_or(Error::Malformed("invalid content-length"))
}

/// Whether a comma-separated header value holds `token` (any case).
pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Whether the last coding of a `Transfer-Encoding` value is `token`.
fn last_token_is(value: &[u8], token: &str) -> bool {
    value
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Writes all of `bytes`, waiting for room when the socket is full.
async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match io.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => io.writable().await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A request head being written: the request line, then header lines.
pub struct HeadWriter(Vec<u8>);

impl HeadWriter {
    /// `METHOD target HTTP/1.1`; the target is written by the caller's parts.
    pub fn new(method: &str, target: &[&str], capacity: usize) -> HeadWriter {
        let mut head = Vec::with_capacity(capacity);
        head.extend_from_slice(method.as_bytes());
        head.push(b' ');
        for part in target {
            head.extend_from_slice(part.as_bytes());
        }
        head.extend_from_slice(b" HTTP/1.1\r\n");
        HeadWriter(head)
    }

    /// A header line of the gateway's own making. A value holding a control
    /// character (CR, LF…) is left out: it could end the line early and smuggle
    /// one in.
    pub fn header(&mut self, name: &str, value: &[u8]) {
        // Every byte looked at, without an early exit, so the loop vectorises:
        // the values are short and nearly always clean.
        let control = value.iter().fold(false, |bad, &b| {
            bad | ((b < 0x20) & (b != b'\t')) | (b == 0x7f)
        });
        if control {
            return;
        }
        self.line(name, value);
    }

    /// A header line as the client sent it: its value already passed the HTTP/1.1
    /// parser (`httparse`: no control character but tab) or `h2`'s checks.
    pub fn client_header(&mut self, name: &str, value: &HeaderValue) {
        self.line(name, value.as_bytes());
    }

    fn line(&mut self, name: &str, value: &[u8]) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// The head, ended by its blank line.
    pub fn finish(mut self) -> Vec<u8> {
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(wire: &[u8], piece: usize) -> Result<Vec<u8>, &'static str> {
        let mut state = Chunk::Size;
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut trailers = 0;
        for part in wire.chunks(piece) {
            buf.extend_from_slice(part);
            loop {
                match chunk_step(&mut state, &mut buf, &mut trailers) {
                    Step::Data(d) => out.extend_from_slice(&d),
                    Step::Again => {}
                    Step::More => break,
                    Step::End => return Ok(out),
                    Step::Invalid(what) => return Err(what),
                }
            }
        }
        Err("ended early")
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_sizes() {
        let wire = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for piece in 1..wire.len() {
            assert_eq!(
                decode(wire, piece).as_deref(),
                Ok(&b"hello, world"[..]),
                "{piece}"
            );
        }
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n", 64).unwrap().len(),
            10
        );
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        assert!(decode(b"zz\r\nhello\r\n0\r\n\r\n", 64).is_err());
        assert!(decode(b"5\r\nhelloXX0\r\n\r\n", 64).is_err());
        assert!(decode(b"11111111111111111\r\n", 64).is_err());
        assert_eq!(decode(b"5\r\nhel", 64), Err("ended early"));
    }

    #[test]
    fn header_values_with_control_characters_are_left_out() {
        let mut w = HeadWriter::new("GET", &["/a", "?b"], 64);
        w.header("x-ok", b"1\t2");
        w.header("x-bad", b"1\r\nx-smuggled: 1");
        assert_eq!(
            w.finish(),
            b"GET /a?b HTTP/1.1\r\nx-ok: 1\t2\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn tokens_are_found_in_lists() {
        assert!(has_token(b"keep-alive, Close", "close"));
        assert!(!has_token(b"closed", "close"));
        assert!(last_token_is(b"gzip, chunked", "chunked"));
        assert!(!last_token_is(b"chunked, gzip", "chunked"));
        assert!(content_length(b"+5").is_err());
        assert_eq!(content_length(b" 42 ").ok(), Some(42));
    }
}
