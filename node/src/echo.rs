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

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Test switches shared by every worker of the echo server.
#[derive(Default)]
struct Control {
    failing: AtomicBool,
    requests: AtomicU64,
}

pub fn run(listen: &str, workers: usize) -> std::io::Result<()> {
    let control = web::Data::from(Arc::new(Control::default()));
    actix_rt::System::new().block_on(async move {
        HttpServer::new(move || {
            App::new()
                .app_data(control.clone())
                .route("/_control/fail", web::post().to(fail))
                .route("/_control/heal", web::post().to(heal))
                .route("/_control/stats", web::get().to(stats))
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    let control = req.app_data::<web::Data<Control>>().cloned();
                    let is_control = req.path().starts_with("/_control/");
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
        .backlog(4096)
        .bind_auto_h2c(listen)?
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
