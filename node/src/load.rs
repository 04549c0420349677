//! `sluice load`: a small traffic generator that behaves like a DNS-balanced client.
//!
//! Operators put the nodes behind one DNS name (in Docker: the alias `gateway`,
//! answered round-robin); this is the client side of that. Every request opens a
//! new connection (`Connection: close`), and every new connection resolves the name
//! again, so a node that leaves or joins the answer is seen at once. The addresses
//! of one answer are tried in turn from a rotating start, so requests spread over
//! them whatever order the resolver returns (glibc re-sorts answers by RFC 6724,
//! which would otherwise pin every client to one node); a connection that is
//! refused (or times out) is retried on the next address, as browsers and curl do.
//! Each node is named by the `node_id` its `GET /health` reports, asked once per
//! address. At the end it prints counts per node and per status, as text or JSON.
//!
//! It is a test and demo tool, not part of the gateway: plain blocking sockets, one
//! thread per connection slot, HTTP/1.1 only, no TLS.

use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What `sluice load` was asked to do.
pub struct Options {
    pub target: String,
    pub duration: Duration,
    pub concurrency: usize,
    /// Total requests per second over all threads; 0 = as fast as possible.
    pub rate: u64,
    pub timeout: Duration,
    /// Extra request headers, `Name: value`.
    pub headers: Vec<String>,
    pub json: bool,
}

/// Parses `500ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num.parse().map_err(|_| format!("bad duration '{s}'"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("bad duration unit in '{s}' (ms, s, m)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

/// `http://host:port/path?query` split into its parts.
struct Target {
    host: String,
    port: u16,
    path: String,
}

fn parse_target(url: &str) -> Result<Target, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("--target must be an http:// URL, got '{url}'"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_owned()),
        None => (rest, "/".to_owned()),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
            h.trim_matches(|c| c == '[' || c == ']').to_owned(),
            p.parse().map_err(|_| format!("bad port in '{url}'"))?,
        ),
        _ => (authority.to_owned(), 80),
    };
    if host.is_empty() {
        return Err(format!("no host in '{url}'"));
    }
    Ok(Target { host, port, path })
}

/// Counts one thread keeps; merged at the end.
#[derive(Default)]
struct Tally {
    /// (node label, outcome) -> requests. Outcome: the status code, or an error kind.
    by_node_outcome: BTreeMap<(String, String), u64>,
    /// address -> connections that failed and were retried on the next address.
    connect_failures: BTreeMap<String, u64>,
}

/// node label per address, from `GET /health` (`node_id`), asked once.
type Names = Arc<Mutex<HashMap<SocketAddr, String>>>;

fn resolve(t: &Target) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = (t.host.as_str(), t.port).to_socket_addrs()?.collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

/// Sends one request on a fresh connection to `addr`; the status code, or an error
/// kind. Reads to EOF (the request says `Connection: close`).
fn exchange(
    addr: SocketAddr,
    request: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>), &'static str> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|_| "connect")?;
    s.set_read_timeout(Some(timeout)).map_err(|_| "socket")?;
    s.set_write_timeout(Some(timeout)).map_err(|_| "socket")?;
    s.write_all(request).map_err(|_| "write_error")?;
    let mut buf = Vec::with_capacity(1024);
    if let Err(e) = s.read_to_end(&mut buf) {
        return Err(match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => "timeout",
            ErrorKind::ConnectionReset => "reset",
            _ => "read_error",
        });
    }
    // "HTTP/1.1 200 OK\r\n..."
    let status = buf
        .split(|b| *b == b' ')
        .nth(1)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok());
    match status {
        Some(code) => Ok((code, buf)),
        None if buf.is_empty() => Err("empty_reply"),
        None => Err("bad_reply"),
    }
}

fn node_name(addr: SocketAddr, t: &Target, names: &Names, timeout: Duration) -> String {
    if let Some(n) = names.lock().ok().and_then(|m| m.get(&addr).cloned()) {
        return n;
    }
    let req = format!(
        "GET /health HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        t.host
    );
    let id = exchange(addr, req.as_bytes(), timeout)
        .ok()
        .and_then(|(code, buf)| {
            let start = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
            let v: Value = serde_json::from_slice(&buf[start..]).ok()?;
            (code == 200).then(|| v["node_id"].as_u64()).flatten()
        });
    let name = match id {
        Some(id) => format!("node-{id}"),
        None => return addr.ip().to_string(), // not cached: ask again next time
    };
    if let Ok(mut m) = names.lock() {
        m.insert(addr, name.clone());
    }
    name
}

fn worker(
    t: Arc<Target>,
    opts: Arc<Options>,
    names: Names,
    stop: Arc<AtomicBool>,
    seed: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-load\r\nConnection: close\r\n",
        t.path, t.host
    );
    for h in &opts.headers {
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let interval = (opts.rate > 0)
        .then(|| Duration::from_secs_f64(opts.concurrency as f64 / opts.rate as f64));
    let mut next = Instant::now();
    let mut turn = seed;
    while !stop.load(Ordering::Relaxed) {
        if let Some(i) = interval {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += i;
        }
        let addrs = match resolve(&t) {
            Ok(a) if !a.is_empty() => a,
            _ => {
                *tally
                    .by_node_outcome
                    .entry(("-".into(), "dns_error".into()))
                    .or_default() += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        turn = turn.wrapping_add(1);
        let mut outcome = None;
        for k in 0..addrs.len() {
            let addr = addrs[(turn + k) % addrs.len()];
            match exchange(addr, request.as_bytes(), opts.timeout) {
                Err("connect") => {
                    *tally.connect_failures.entry(addr.to_string()).or_default() += 1;
                }
                result => {
                    let node = node_name(addr, &t, &names, opts.timeout);
                    let what = match result {
                        Ok((code, _)) => code.to_string(),
                        Err(kind) => kind.to_owned(),
                    };
                    outcome = Some((node, what));
                    break;
                }
            }
        }
        let key = outcome.unwrap_or_else(|| ("-".into(), "connect_failed".into()));
        *tally.by_node_outcome.entry(key).or_default() += 1;
    }
    tally
}

/// Runs the load and prints the report.
pub fn run(opts: Options) -> Result<(), String> {
    let target = Arc::new(parse_target(&opts.target)?);
    if opts.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    let opts = Arc::new(opts);
    let names: Names = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..opts.concurrency)
        .map(|i| {
            let (t, o, n, s) = (target.clone(), opts.clone(), names.clone(), stop.clone());
            std::thread::spawn(move || worker(t, o, n, s, i))
        })
        .collect();
    std::thread::sleep(opts.duration);
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::default();
    for th in threads {
        let t = th.join().map_err(|_| "a load thread panicked".to_owned())?;
        for (k, v) in t.by_node_outcome {
            *total.by_node_outcome.entry(k).or_default() += v;
        }
        for (k, v) in t.connect_failures {
            *total.connect_failures.entry(k).or_default() += v;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let report = summarize(&opts.target, elapsed, &total, &names);
    if opts.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    Ok(())
}

fn summarize(target: &str, elapsed: f64, t: &Tally, names: &Names) -> Value {
    let mut by_status: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_node: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut requests = 0;
    for ((node, outcome), n) in &t.by_node_outcome {
        requests += n;
        *by_status.entry(outcome).or_default() += n;
        *by_node.entry(node).or_default().entry(outcome).or_default() += n;
    }
    let nodes: BTreeMap<String, String> = names
        .lock()
        .map(|m| m.iter().map(|(a, n)| (n.clone(), a.to_string())).collect())
        .unwrap_or_default();
    json!({
        "target": target,
        "duration_secs": (elapsed * 1000.0).round() / 1000.0,
        "requests": requests,
        "rps": if elapsed > 0.0 { (requests as f64 / elapsed).round() } else { 0.0 },
        "by_status": by_status,
        "by_node": by_node,
        "nodes": nodes,
        "connect_retries": t.connect_failures,
    })
}

fn print_text(r: &Value) {
    println!(
        "{} requests in {}s ({} req/s) to {}",
        r["requests"],
        r["duration_secs"],
        r["rps"],
        r["target"].as_str().unwrap_or("?")
    );
    println!("by status: {}", r["by_status"]);
    if let Some(nodes) = r["by_node"].as_object() {
        for (node, counts) in nodes {
            let addr = r["nodes"][node].as_str().unwrap_or("");
            println!("  {node:<10} {addr:<22} {counts}");
        }
    }
    if r["connect_retries"]
        .as_object()
        .is_some_and(|m| !m.is_empty())
    {
        println!(
            "connections failed and retried on the next address: {}",
            r["connect_retries"]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_durations() {
        let t = parse_target("http://gateway:8080/api/x?y=1").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("gateway", 8080, "/api/x?y=1")
        );
        let t = parse_target("http://gateway").unwrap();
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        assert!(parse_target("https://x/").is_err());
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("1h").is_err());
    }
}
