//! `GET /console`: the admin console, one static page served by every node on its
//! admin listener. HTML, CSS and plain JavaScript are compiled into the binary
//! (`include_str!`): no build step, no CDN, works offline.
//!
//! The page itself needs no token: it holds no data. It logs in with an admin
//! token typed into a form (kept in `sessionStorage`, sent as `Authorization:
//! Bearer`, never in a URL) and reads the admin API like any other client, so a
//! write it offers later goes through the same authorisation. The script and the
//! stylesheet are separate same-origin resources so the Content-Security-Policy
//! can forbid every inline script, style and event handler.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// Same-origin script, style and fetches only; no frames, forms, plugins or base
/// URL tricks. `img-src data:` lets the page use data-URL images (none today).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

const HTML: &str = include_str!("console/index.html");
const JS: &str = include_str!("console/app.js");
const CSS: &str = include_str!("console/app.css");

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/console", web::get().to(page))
        .route("/console/", web::get().to(page))
        .route("/console/app.js", web::get().to(script))
        .route("/console/app.css", web::get().to(style));
}

/// A console resource with the headers every one of them carries.
fn asset(content_type: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(body)
}

async fn page() -> HttpResponse {
    asset("text/html; charset=utf-8", HTML)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", JS)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", CSS)
}
