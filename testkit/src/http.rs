//! One HTTP round trip, read whole.

use awc::http::header::HeaderMap;
use serde_json::Value;
use std::time::Duration;

/// An awc client for tests: `timeout` per request, redirects not followed (a
/// gateway's redirects are answers to check, not to chase).
pub fn client(timeout: Duration) -> awc::Client {
    awc::Client::builder()
        .timeout(timeout)
        .disable_redirects()
        .finish()
}

/// An HTTP answer: status, headers and the body as text and as JSON (`Null` when
/// it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends a request (with `body`, if any), reads the whole body (≤ 8 MiB) and
/// parses it as JSON when it is. `Err` says whether sending or reading failed.
pub async fn send(req: awc::ClientRequest, body: Option<Vec<u8>>) -> Result<Answer, String> {
    let sent = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    };
    let mut resp = sent.map_err(|e| format!("send: {e}"))?;
    let bytes = resp
        .body()
        .limit(8 << 20)
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}
