//! A server that answers every request itself, with what the benchmark upstream
//! (nginx `return 200`) answers: `scripts/bench-answer.sh` compares what each HTTP
//! server stack costs per request before a proxy does anything.
//!
//! Usage: `bare_answer actix|actix-http|hyper|hyper-local LISTEN_ADDR`, one worker
//! each:
//! - `actix`: actix-web's `HttpServer` (actix-server, actix-http's dispatcher, an
//!   actix `Arbiter` per worker), a default service answering the body;
//! - `actix-http`: actix-http's `HttpService` on actix-server with no actix-web
//!   `App`, as Sluice's data port is built;
//! - `hyper`: hyper 1.x's HTTP/1.1 connection on a current-thread tokio runtime,
//!   one task per connection;
//! - `hyper-local`: the same on actix's runtime, each connection a local task.
#![forbid(unsafe_code)]

use http_body_util::Full;
use hyper::body::Bytes;

const BODY: &[u8] = b"hello from the benchmark upstream\n";

fn actix(listen: String) -> std::io::Result<()> {
    use actix_web::{web, App, HttpResponse, HttpServer};
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new().default_service(web::to(|| async {
                HttpResponse::Ok().content_type("text/plain").body(BODY)
            }))
        })
        .workers(1)
        .bind(listen)?
        .run()
        .await
    })
}

/// actix-http's `HttpService` on actix-server, as Sluice's data port is built
/// (no actix-web `App`).
fn actix_http(listen: String) -> std::io::Result<()> {
    use actix_http::{HttpService, Response};
    use actix_service::fn_service;
    actix_rt::System::new().block_on(async move {
        actix_server::Server::build()
            .bind("answer", listen, || {
                HttpService::build()
                    .finish(fn_service(|_req| async {
                        let mut response = Response::ok().set_body(BODY);
                        response.headers_mut().insert(
                            actix_http::header::CONTENT_TYPE,
                            actix_http::header::HeaderValue::from_static("text/plain"),
                        );
                        Ok::<_, actix_http::Error>(response)
                    }))
                    .tcp()
            })?
            .workers(1)
            .run()
            .await
    })
}

/// hyper's HTTP/1.1 connection on actix's runtime (a current-thread tokio runtime
/// with a `LocalSet`), each connection a local task.
fn hyper_local(listen: String) -> std::io::Result<()> {
    actix_rt::System::new().block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            actix_rt::spawn(serve_hyper(socket));
        }
    })
}

/// One connection, every request answered with the body.
async fn serve_hyper(socket: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(|_req| async {
        let mut response = hyper::Response::new(Full::new(Bytes::from_static(BODY)));
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain"),
        );
        Ok::<_, std::convert::Infallible>(response)
    });
    let io = hyper_util::rt::TokioIo::new(socket);
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, service)
        .await;
}

fn hyper(listen: String) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (socket, _) = listener.accept().await?;
            let _ = socket.set_nodelay(true);
            tokio::spawn(serve_hyper(socket));
        }
    })
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("actix"), Some(listen)) => actix(listen),
        (Some("hyper"), Some(listen)) => hyper(listen),
        (Some("actix-http"), Some(listen)) => actix_http(listen),
        (Some("hyper-local"), Some(listen)) => hyper_local(listen),
        _ => {
            eprintln!("usage: bare_answer actix|actix-http|hyper|hyper-local LISTEN_ADDR");
            std::process::exit(2);
        }
    }
}
