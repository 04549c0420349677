//! `sluice echo-server`: a tiny upstream for the quickstart, the benchmark and the
//! integration tests. It is not part of the gateway's data path.
//!
//! - any path: JSON echo of method, path, query, headers and the body length
//! - `/delay/{ms}`: answer after a pause (timeouts, drain)
//! - `/status/{code}`: answer with that status
//! - `/bytes/{n}`: stream `n` bytes (large downloads)
//! - `/hello`: a fixed small body (benchmarks)
//! - `/health`: 200, or 500 while failing (not counted in the stats)
//! - `POST /_control/fail` and `/_control/heal`: switch every other path to 500 and
//!   back; `GET /_control/stats`: how many non-control requests arrived
//! - `POST /sink/...`: a webhook receiver: answers 204 and records the request's
//!   `webhook-id` (the first [`SINK_IDS`] distinct ids are kept);
//!   `GET /sink`: `{"received": N, "unique": U, "dropped": D, "ids": [...]}`
//!   (POSTs with an id, retries included; distinct ids kept; POSTs whose id was
//!   not kept because the set was full; the kept ids in arrival order). Neither
//!   is counted in the stats nor failed by the switch.

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How many distinct `webhook-id`s the sink keeps (about 40 bytes each).
const SINK_IDS: usize = 1_000_000;

/// Test switches shared by every worker of the echo server.
#[derive(Default)]
struct Control {
    failing: AtomicBool,
    requests: AtomicU64,
    sink: Mutex<Sink>,
}

/// What `POST /sink/...` received.
#[derive(Default)]
struct Sink {
    /// POSTs that carried a `webhook-id` (retries and duplicates included).
    received: u64,
    /// POSTs with an id not kept because the set was full (counted, not kept).
    dropped: u64,
    seen: HashSet<String>,
    /// `seen` in arrival order.
    ids: Vec<String>,
}

/// Serves on `listen`: h2c and HTTP/1.1, or with `tls` HTTPS (h2 and HTTP/1.1 by ALPN).
pub fn run(listen: &str, workers: usize, tls: Option<rustls::ServerConfig>) -> std::io::Result<()> {
    let control = web::Data::from(Arc::new(Control::default()));
    actix_rt::System::new().block_on(async move {
        let server = HttpServer::new(move || {
            App::new()
                .app_data(control.clone())
                .route("/_control/fail", web::post().to(fail))
                .route("/_control/heal", web::post().to(heal))
                .route("/_control/stats", web::get().to(stats))
                .route("/sink", web::get().to(sink_view))
                .route("/sink", web::post().to(sink_record))
                .route("/sink/{tail:.*}", web::post().to(sink_record))
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    let control = req.app_data::<web::Data<Control>>().cloned();
                    let path = req.path();
                    let is_control = path.starts_with("/_control/")
                        || path == "/sink"
                        || path.starts_with("/sink/");
                    let failing = match (&control, is_control) {
                        (Some(c), false) => {
                            // Health checks are not traffic: they are not counted.
                            if req.path() != "/health" {
                                c.requests.fetch_add(1, Ordering::Relaxed);
                            }
                            c.failing.load(Ordering::Relaxed)
                        }
                        _ => false,
                    };
                    let fut = (!failing).then(|| srv.call(req));
                    async move {
                        match fut {
                            Some(f) => f.await,
                            None => Err(actix_web::error::ErrorInternalServerError("failing")),
                        }
                    }
                })
                .route(
                    "/health",
                    web::get().to(|| async { HttpResponse::Ok().body("ok") }),
                )
                .route("/hello", web::to(hello))
                .route("/delay/{ms}", web::to(delay))
                .route("/status/{code}", web::to(status))
                .route("/bytes/{n}", web::to(bytes))
                .default_service(web::to(echo))
        })
        .workers(workers)
        .backlog(4096);
        match tls {
            Some(tls) => server.bind_rustls_0_23(listen, tls)?,
            None => server.bind_auto_h2c(listen)?,
        }
        .run()
        .await
    })
}

async fn fail(c: web::Data<Control>) -> HttpResponse {
    c.failing.store(true, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

async fn heal(c: web::Data<Control>) -> HttpResponse {
    c.failing.store(false, Ordering::Relaxed);
    HttpResponse::Ok().finish()
}

async fn stats(c: web::Data<Control>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "requests": c.requests.load(Ordering::Relaxed) }))
}

/// `POST /sink/...`: 204, and the `webhook-id` recorded (the body is read and
/// dropped, so the connection stays reusable).
async fn sink_record(
    c: web::Data<Control>,
    req: HttpRequest,
    mut body: web::Payload,
) -> HttpResponse {
    while let Some(chunk) = body.next().await {
        if let Err(e) = chunk {
            return HttpResponse::BadRequest().body(e.to_string());
        }
    }
    let id = req
        .headers()
        .get("webhook-id")
        .and_then(|v| v.to_str().ok());
    if let Some(id) = id {
        let mut sink = c.sink.lock().unwrap_or_else(|p| p.into_inner());
        sink.received += 1;
        if !sink.seen.contains(id) {
            if sink.ids.len() < SINK_IDS {
                sink.seen.insert(id.to_owned());
                sink.ids.push(id.to_owned());
            } else {
                sink.dropped += 1;
            }
        }
    }
    HttpResponse::NoContent().finish()
}

/// `GET /sink`: what the sink received.
async fn sink_view(c: web::Data<Control>) -> HttpResponse {
    let sink = c.sink.lock().unwrap_or_else(|p| p.into_inner());
    HttpResponse::Ok().json(json!({
        "received": sink.received,
        "unique": sink.ids.len(),
        "dropped": sink.dropped,
        "ids": sink.ids,
    }))
}

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain")
        .body("hello from the sluice demo upstream\n")
}

async fn delay(path: web::Path<u64>, req: HttpRequest, body: web::Payload) -> HttpResponse {
    tokio::time::sleep(Duration::from_millis(path.into_inner())).await;
    echo(req, body).await
}

async fn status(path: web::Path<u16>) -> HttpResponse {
    let code = actix_web::http::StatusCode::from_u16(path.into_inner())
        .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST);
    HttpResponse::build(code).json(json!({ "status": code.as_u16() }))
}

async fn bytes(path: web::Path<u64>) -> HttpResponse {
    const CHUNK: usize = 64 * 1024;
    let total = path.into_inner();
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let stream = futures_util::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK as u64);
            Some((
                Ok::<_, actix_web::Error>(chunk.slice(..n as usize)),
                left - n,
            ))
        }
    });
    HttpResponse::Ok()
        .content_type("application/octet-stream")
        .body(actix_web::body::SizedStream::new(total, stream))
}

async fn echo(req: HttpRequest, mut body: web::Payload) -> HttpResponse {
    // Count the body without keeping it: uploads of any size use constant memory.
    let mut len: u64 = 0;
    let mut sum: u64 = 0;
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(c) => {
                len += c.len() as u64;
                sum = c
                    .iter()
                    .fold(sum, |s, b| s.wrapping_mul(31).wrapping_add(*b as u64));
            }
            Err(e) => return HttpResponse::BadRequest().body(e.to_string()),
        }
    }
    let headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "method": req.method().as_str(),
        "path": req.path(),
        "query": req.query_string(),
        "version": format!("{:?}", req.version()),
        "headers": headers,
        "body_length": len,
        "body_checksum": sum,
        "peer": req.peer_addr().map(|a| a.to_string()),
    }))
}
