//! An open-loop HTTP/1.1 load generator (`wrk2` is not packaged): GET URL at a fixed
//! rate, whatever the server does, and latency measured the way that does not hide a
//! stall (no coordinated omission).
//!
//! Request `i` has an intended send time `start + i / RATE`; its latency runs from that
//! time, not from when it was actually sent, to the end of its response. A server that
//! stalls for 10 ms is charged for every request that should have gone out meanwhile,
//! as a client arriving at that rate would see it. CONNECTIONS keep-alive connections
//! take the next request whichever is free; when all are busy, requests queue (and
//! that wait is in their latency).
//!
//! One thread and non-blocking sockets: it sleeps in `ppoll` until the next send is
//! due or a response arrives, with a nanosecond timeout (epoll's, and so tokio's and
//! mio's, is rounded up to a millisecond, which would send in bursts and add up to
//! 1 ms to every latency). Responses that arrive together are read in one wake-up,
//! and requests that fall due together go out in one. It costs about what one
//! blocking thread per connection cost (26 us of CPU per request at 25,000 req/s on
//! the 2-core machine on a slow day, 6-9 us at 38,000 req/s on a fast one, nearly
//! all of it the kernel's loopback TCP and wake-ups),
//! but it is one runnable thread where that was up to 32 competing with the
//! servers under test for the cores: through nginx at 24,000 req/s the median
//! fell from 360-850 us to 110-150 us, and the rounds' tails vary less.
//!
//! Usage: `openloop URL RATE CONNECTIONS SECONDS` (URL `http://host:port/path`).
//! Prints one line of `key=value` pairs: requests, errors (I/O errors and non-2xx
//! answers), achieved rate, and the latency percentiles in microseconds.
//!
//! With `OPENLOOP_TRACE=FILE` it also writes one line per answered request to FILE:
//! its intended send time after the start and its latency, both in microseconds,
//! to see whether a tail is spread over the run or made of a few stalls.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

struct Target {
    addr: String,
    request: Vec<u8>,
}

fn parse_url(url: &str) -> Option<Target> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: openloop\r\n\r\n")
            .into_bytes();
    Some(Target {
        addr: authority.to_owned(),
        request,
    })
}

/// A response read off a connection.
struct Answer {
    status: u16,
    /// The server closes the connection after it (`Connection: close`).
    close: bool,
    /// Bytes of the buffer it took.
    len: usize,
}

/// The complete response at the start of `buf`, if it is all there. Bodies must
/// have a `Content-Length` (the benchmark upstreams answer a fixed body).
fn parse_answer(buf: &[u8]) -> io::Result<Option<Answer>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let mut length = 0usize;
    let mut close = false;
    for h in response.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
        } else if h.name.eq_ignore_ascii_case("connection") {
            close = h.value.eq_ignore_ascii_case(b"close");
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "chunked body not supported",
            ));
        }
    }
    Ok((buf.len() >= head + length).then_some(Answer {
        status: response.code.unwrap_or(0),
        close,
        len: head + length,
    }))
}

fn connect(addr: &str) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(stream)
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The intended send time of the request in flight on it.
    in_flight: Option<Instant>,
}

impl Conn {
    /// A new connection in place of this one (kept as it is if that fails: its
    /// next request then fails too and counts as an error).
    fn reconnect(&mut self, addr: &str) {
        if let Ok(s) = connect(addr) {
            self.stream = s;
            self.buf.clear();
        }
    }
}

/// Sleeps until one of `fds` is readable or `timeout` has passed, with
/// nanosecond precision.
fn wait(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs().min(i32::MAX as u64) as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `fds` is a live, exclusively borrowed slice of `pollfd` of the length
    // passed; `ts` is alive until the call returns; a null signal mask means the
    // thread's own is kept.
    let r = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            &ts,
            std::ptr::null(),
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// The run: sends request `i` at `start + i * interval` on a free connection (or,
/// when none is free, as soon as one is), reads the answers, returns the
/// latencies in microseconds and the error count.
fn run(
    target: &Target,
    mut conns: Vec<Conn>,
    total: u64,
    start: Instant,
    interval_ns: f64,
    give_up: Instant,
) -> (Vec<u32>, u64) {
    let intended = |i: u64| start + Duration::from_nanos((i as f64 * interval_ns) as u64);
    let mut latencies = Vec::with_capacity(total as usize);
    let mut errors = 0u64;
    let mut free: Vec<usize> = (0..conns.len()).rev().collect();
    let mut next = 0u64;
    let mut finished = 0u64;
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(conns.len());
    let mut ready: Vec<usize> = Vec::with_capacity(conns.len());
    let mut chunk = [0u8; 16 * 1024];
    let trace_path = std::env::var_os("OPENLOOP_TRACE");
    let mut trace: Option<Vec<(u64, u64)>> = trace_path
        .as_ref()
        .map(|_| Vec::with_capacity(total as usize));
    while finished < total {
        let now = Instant::now();
        if now > give_up {
            // Answers that never came.
            errors += total - finished;
            break;
        }
        // Everything due goes out.
        while next < total && intended(next) <= now {
            let Some(i) = free.pop() else { break };
            let c = &mut conns[i];
            match c.stream.write(&target.request) {
                Ok(n) if n == target.request.len() => c.in_flight = Some(intended(next)),
                _ => {
                    errors += 1;
                    finished += 1;
                    c.reconnect(&target.addr);
                    free.push(i);
                }
            }
            next += 1;
        }
        // Sleep until the next send is due (if a connection is free for it) or an
        // answer arrives.
        fds.clear();
        ready.clear();
        for (i, c) in conns.iter().enumerate() {
            if c.in_flight.is_some() {
                fds.push(libc::pollfd {
                    fd: c.stream.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
                ready.push(i);
            }
        }
        // Nothing to send: wait for answers, but not past `give_up`.
        let until = if next < total && !free.is_empty() {
            intended(next)
        } else {
            give_up
        };
        let timeout = until.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            continue;
        }
        if let Err(e) = wait(&mut fds, timeout) {
            eprintln!("openloop: ppoll: {e}");
            std::process::exit(1);
        }
        let now = Instant::now();
        for (k, fd) in fds.iter().enumerate() {
            if fd.revents == 0 {
                continue;
            }
            let i = ready[k];
            let c = &mut conns[i];
            let mut failed = false;
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => {
                        failed = true;
                        break;
                    }
                    Ok(n) => c.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            let answer = match parse_answer(&c.buf) {
                Ok(a) => a,
                Err(_) => {
                    failed = true;
                    None
                }
            };
            let Some(sent) = c.in_flight else { continue };
            match answer {
                Some(a) => {
                    c.buf.drain(..a.len);
                    c.in_flight = None;
                    finished += 1;
                    if (200..300).contains(&a.status) {
                        let micros = now.duration_since(sent).as_micros();
                        latencies.push(micros.min(u32::MAX as u128) as u32);
                        if let Some(t) = trace.as_mut() {
                            t.push((sent.duration_since(start).as_micros() as u64, micros as u64));
                        }
                    } else {
                        errors += 1;
                    }
                    if a.close || failed {
                        c.reconnect(&target.addr);
                    }
                    free.push(i);
                }
                None if failed => {
                    c.in_flight = None;
                    finished += 1;
                    errors += 1;
                    c.reconnect(&target.addr);
                    free.push(i);
                }
                None => {}
            }
        }
    }
    if let (Some(p), Some(t)) = (trace_path, trace) {
        let text: String = t.iter().map(|(s, l)| format!("{s} {l}\n")).collect();
        let _ = std::fs::write(p, text);
    }
    (latencies, errors)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: openloop URL RATE CONNECTIONS SECONDS   (URL http://host:port/path)");
        std::process::exit(2)
    };
    if args.len() != 4 {
        usage();
    }
    let target = parse_url(&args[0]).unwrap_or_else(|| usage());
    let rate: f64 = args[1]
        .parse()
        .ok()
        .filter(|r: &f64| *r > 0.0)
        .unwrap_or_else(|| usage());
    let connections: usize = args[2]
        .parse()
        .ok()
        .filter(|c| *c > 0)
        .unwrap_or_else(|| usage());
    let seconds: f64 = args[3]
        .parse()
        .ok()
        .filter(|s: &f64| *s > 0.0)
        .unwrap_or_else(|| usage());
    let total = (rate * seconds) as u64;
    let interval_ns = 1e9 / rate;
    // Linux lets a sleeping thread wake up to 50 us late by default (timer slack), and
    // that lateness would be charged to the server: 1 ns instead. Best effort.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    // Every connection is open before the clock starts.
    let conns: Vec<Conn> = (0..connections)
        .map(|_| Conn {
            stream: connect(&target.addr).unwrap_or_else(|e| {
                eprintln!("openloop: cannot connect to {}: {e}", target.addr);
                std::process::exit(1)
            }),
            buf: Vec::with_capacity(4096),
            in_flight: None,
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    let give_up = start + Duration::from_secs_f64(seconds) + Duration::from_secs(30);
    let (mut all, errors) = run(&target, conns, total, start, interval_ns, give_up);
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "requests={} errors={} rate={:.0} p50_us={} p90_us={} p99_us={} p999_us={} max_us={}",
        all.len(),
        errors,
        (all.len() as u64 + errors) as f64 / elapsed,
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(0.999),
        all.last().copied().unwrap_or(0)
    );
}
