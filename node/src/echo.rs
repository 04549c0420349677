//! `sluice echo-server`: a tiny upstream for the quickstart, the benchmark and the
//! integration tests. It is not part of the gateway's data path.
//!
//! - any path: JSON echo of method, path, query, headers and the body length
//! - `/delay/{ms}`: answer after a pause (timeouts, drain)
//! - `/status/{code}`: answer with that status
//! - `/bytes/{n}`: stream `n` bytes (large downloads)
//! - `/hello`: a fixed small body (benchmarks)

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;

pub fn run(listen: &str, workers: usize) -> std::io::Result<()> {
    actix_rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
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
