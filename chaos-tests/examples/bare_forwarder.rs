//! The floor `scripts/bench.sh` and `scripts/bench-cost.sh` compare Sluice with: an
//! actix-web handler that forwards every request to one upstream with hyper 1.x's
//! pooled client (hyper-util's legacy `Client`, keep-alive), on one worker, with
//! every setting at its default and no features (no hop-by-hop handling, no
//! forwarding headers, no timeouts, no streaming: bodies are buffered).
//!
//! Usage: `bare_forwarder LISTEN_ADDR UPSTREAM_BASE_URL [WORKERS]` (WORKERS: 1), e.g.
//! `bare_forwarder 127.0.0.1:18085 http://127.0.0.1:18091`.
#![forbid(unsafe_code)]

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

type Upstream = Client<HttpConnector, Full<Bytes>>;

async fn forward(
    req: HttpRequest,
    body: Bytes,
    client: web::Data<Upstream>,
    base: web::Data<String>,
) -> HttpResponse {
    let uri = format!(
        "{}{}",
        base.get_ref(),
        req.uri().path_and_query().map_or("/", |pq| pq.as_str())
    );
    // actix-web 4 is on `http` 0.2, hyper 1 on `http` 1: names and values cross as bytes.
    let mut up = hyper::Request::builder()
        .method(req.method().as_str())
        .uri(uri);
    for (name, value) in req.headers() {
        if name != "host" {
            up = up.header(name.as_str(), value.as_bytes());
        }
    }
    let Ok(up) = up.body(Full::new(body)) else {
        return HttpResponse::BadRequest().finish();
    };
    let Ok(resp) = client.request(up).await else {
        return HttpResponse::BadGateway().finish();
    };
    let (parts, body) = resp.into_parts();
    let Ok(body) = body.collect().await else {
        return HttpResponse::BadGateway().finish();
    };
    let mut out = HttpResponse::build(
        actix_web::http::StatusCode::from_u16(parts.status.as_u16()).unwrap_or_default(),
    );
    for (name, value) in &parts.headers {
        out.append_header((name.as_str(), value.as_bytes()));
    }
    out.body(body.to_bytes())
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(base)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_forwarder LISTEN_ADDR UPSTREAM_BASE_URL [WORKERS]");
        std::process::exit(2);
    };
    let workers = args
        .next()
        .map_or(1, |w| w.parse().expect("WORKERS must be a number"));
    let base = base.trim_end_matches('/').to_owned();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let client: Upstream = Client::builder(TokioExecutor::new()).build_http();
            App::new()
                .app_data(web::Data::new(client))
                .app_data(web::Data::new(base.clone()))
                .default_service(web::to(forward))
        })
        .workers(workers)
        .bind(listen)?
        .run()
        .await
    })
}
