//! HTTP/1.1 written and read by hand over TCP, both ways:
//!
//! - [`raw_request`] sends a request exactly as written, for what an HTTP client
//!   would tidy up first: dot segments and percent-escapes in the path
//!   (`/static/../api`, `%2e%2e`, `%2F`), header names with underscores or odd
//!   casing (`X_User_ID`), the same header several times.
//! - [`Recorder`] is an upstream that answers every request with what arrived on
//!   the wire, each header line as sent: where the echo server's JSON folds
//!   repeated headers into one entry, this one shows every copy.
//!
//! Both are blocking (std sockets) and meant for loopback.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Reads one request head (through the blank line) off `s`, a byte at a time so
/// nothing after it is consumed; `None` if the connection ends first.
pub fn read_raw_head(s: &mut impl Read) -> Option<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    Some(head)
}

/// An answer read off the wire: status, header lines in order (names as sent),
/// the body de-chunked, as text and as JSON (`Null` when it is not JSON).
#[derive(Debug, Clone)]
pub struct RawAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
}

impl RawAnswer {
    /// The first header named `name` (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method target HTTP/1.1` to `127.0.0.1:port` with `Host`, `headers` (each
/// line as written, in order, repeats kept), `Connection: close` and `body` (with
/// its `Content-Length`), then reads the whole answer. `Err` says what failed.
pub fn raw_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Result<RawAnswer, String> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("Connection: close\r\n\r\n");

    let mut stream =
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect :{port}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| format!("set timeout: {e}"))?;
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body.unwrap_or_default()))
        .map_err(|e| format!("write request: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read answer: {e}"))?;
    parse_answer(&raw)
}

fn parse_answer(raw: &[u8]) -> Result<RawAnswer, String> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no end of head in {:?}", shown()))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|e| format!("head not UTF-8: {e}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", shown()))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok());
        match len {
            Some(n) => rest.get(..n).unwrap_or(rest).to_vec(),
            None => rest.to_vec(),
        }
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    Ok(RawAnswer {
        status,
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        text,
    })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line without CRLF")?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|e| e.to_string())?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or("chunk shorter than its size")?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

/// An upstream on a loopback port that answers every request `200` with the JSON
/// `{"request_line": "GET /x HTTP/1.1", "headers": [["name", "value"], ...]}`:
/// every header line as it arrived, names as sent, repeats kept. Keep-alive
/// connections are served until the peer closes them (or asks to with
/// `Connection: close`). Stops accepting on drop.
pub struct Recorder {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Recorder {
    pub fn start() -> Recorder {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                if let Ok(conn) = conn {
                    std::thread::spawn(move || serve(conn));
                }
            }
        });
        Recorder { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves requests on one connection until it closes or sends garbage.
fn serve(conn: TcpStream) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some((request_line, headers)) = read_head(&mut reader) {
        if skip_body(&mut reader, &headers).is_none() {
            return;
        }
        let close = headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close"));
        let body = json!({ "request_line": request_line, "headers": headers }).to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        if out.write_all(answer.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// The request line and header lines of the next request; `None` at EOF.
fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let request_line = line.trim_end().to_owned();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end_matches(['\r', '\n']);
        if l.is_empty() {
            return Some((request_line, headers));
        }
        let (n, v) = l.split_once(':')?;
        headers.push((n.to_owned(), v.trim().to_owned()));
    }
}

/// Reads and drops the request body (`Content-Length` or chunked).
fn skip_body(reader: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Option<()> {
    let get = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_ascii_lowercase())
    };
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            // The chunk and its CRLF (for the last chunk: the empty trailer line).
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                return Some(());
            }
        }
    }
    let len: usize = get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_shows_every_header_line_as_sent() {
        let rec = Recorder::start();
        let a = raw_request(
            rec.port,
            "GET",
            "/a/../b?x=1",
            &[("X_User_ID", "one"), ("x-user-id", "two")],
            None,
        )
        .expect("round trip");
        assert_eq!(a.status, 200);
        assert_eq!(a.body["request_line"], "GET /a/../b?x=1 HTTP/1.1");
        let headers = a.body["headers"].as_array().expect("headers").clone();
        assert!(
            headers.contains(&json!(["X_User_ID", "one"])),
            "{headers:?}"
        );
        assert!(
            headers.contains(&json!(["x-user-id", "two"])),
            "{headers:?}"
        );
    }

    #[test]
    fn chunked_answers_are_dechunked() {
        let a = parse_answer(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n")
            .expect("parse");
        assert_eq!(a.body, json!({ "a": 1 }));
    }
}
