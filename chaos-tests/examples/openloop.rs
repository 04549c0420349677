//! An open-loop HTTP/1.1 load generator (`wrk2` is not packaged): GET URL at a fixed
//! rate, whatever the server does, and latency measured the way that does not hide a
//! stall (no coordinated omission).
//!
//! Request `i` has an intended send time `start + i / RATE`; its latency runs from that
//! time, not from when it was actually sent, to the end of its response. A server that
//! stalls for 10 ms is charged for every request that should have gone out meanwhile,
//! as a client arriving at that rate would see it. CONNECTIONS keep-alive connections
//! take the next request in turn; when all are busy, requests queue (and that wait is
//! in their latency).
//!
//! One OS thread per connection, blocking sockets: `std::thread::sleep` (nanosleep)
//! paces within tens of microseconds, where tokio's timer has a 1 ms tick that would
//! send requests in bursts and add up to 1 ms to every latency.
//! The price: about 20 us of CPU per request (blocking syscalls and two context
//! switches each; wrk, batching on epoll, spends about 8), taken from the cores the
//! servers run on; it is the same for every target of a run.
//!
//! Usage: `openloop URL RATE CONNECTIONS SECONDS` (URL `http://host:port/path`).
//! Prints one line of `key=value` pairs: requests, errors (I/O errors and non-2xx
//! answers), achieved rate, and the latency percentiles in microseconds.
#![forbid(unsafe_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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

/// Reads one response; returns its status and whether the server closes the
/// connection after it (`Connection: close`, e.g. nginx after `keepalive_requests`).
/// Bodies must have a `Content-Length` (no chunked encoding: the benchmark
/// upstreams answer a fixed body).
fn read_response(conn: &mut BufReader<TcpStream>, line: &mut String) -> io::Result<(u16, bool)> {
    line.clear();
    conn.read_line(line)?;
    let status = line.split(' ').nth(1).and_then(|s| s.parse().ok());
    let status =
        status.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
    let mut length = 0usize;
    let mut close = false;
    loop {
        line.clear();
        if conn.read_line(line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad length"))?;
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.trim().eq_ignore_ascii_case("close");
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "chunked body not supported",
                ));
            }
        }
    }
    io::copy(&mut conn.by_ref().take(length as u64), &mut io::sink())?;
    Ok((status, close))
}

fn connect(addr: &str) -> io::Result<BufReader<TcpStream>> {
    let stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    Ok(BufReader::new(stream))
}

/// One connection's share of the run: latencies in microseconds, and its errors.
fn worker(
    target: &Target,
    conn: BufReader<TcpStream>,
    next: &AtomicU64,
    total: u64,
    start: Instant,
    interval_ns: f64,
) -> (Vec<u32>, u64) {
    let mut latencies = Vec::with_capacity((total / 8) as usize);
    let mut errors = 0u64;
    let mut conn = Some(conn);
    let mut line = String::new();
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= total {
            break;
        }
        let intended = start + Duration::from_nanos((i as f64 * interval_ns) as u64);
        let now = Instant::now();
        if intended > now {
            std::thread::sleep(intended - now);
        }
        let result = (|| {
            if conn.is_none() {
                conn = Some(connect(&target.addr)?);
            }
            let c = conn.as_mut().expect("connected above");
            c.get_mut().write_all(&target.request)?;
            read_response(c, &mut line)
        })();
        let micros = intended.elapsed().as_micros().min(u32::MAX as u128) as u32;
        match result {
            Ok((status, close)) => {
                if (200..300).contains(&status) {
                    latencies.push(micros);
                } else {
                    errors += 1;
                }
                if close {
                    conn = None;
                }
            }
            Err(_) => {
                errors += 1;
                conn = None;
            }
        }
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
    let target = Arc::new(parse_url(&args[0]).unwrap_or_else(|| usage()));
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
    let next = Arc::new(AtomicU64::new(0));
    // Linux lets a sleeping thread wake up to 50 us late by default (timer slack), and
    // that lateness would be charged to the server: 1 ns instead, for this thread and
    // so for the workers it spawns (they inherit it). Best effort.
    let _ = std::fs::write("/proc/self/timerslack_ns", "1");
    // Every connection is open before the clock starts.
    let conns: Vec<_> = (0..connections)
        .map(|_| {
            connect(&target.addr).unwrap_or_else(|e| {
                eprintln!("openloop: cannot connect to {}: {e}", target.addr);
                std::process::exit(1)
            })
        })
        .collect();
    let start = Instant::now() + Duration::from_millis(20);
    let threads: Vec<_> = conns
        .into_iter()
        .map(|conn| {
            let (target, next) = (Arc::clone(&target), Arc::clone(&next));
            std::thread::spawn(move || worker(&target, conn, &next, total, start, interval_ns))
        })
        .collect();
    let mut all = Vec::with_capacity(total as usize);
    let mut errors = 0;
    for t in threads {
        let (latencies, e) = t.join().expect("worker thread panicked");
        all.extend(latencies);
        errors += e;
    }
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
