//! `/admin/config`, `/admin/services/{name}`, `/admin/routes/{id}`: the replicated
//! gateway config, whole or one entity at a time. Bodies are parsed here (a parse
//! error names every bad key); whether the change leaves a valid config is decided
//! by the state machine when it applies the command, against the current state.
//! HS256 secrets read back as `"<redacted>"`, and a PUT carrying that placeholder
//! keeps the stored secret of the key with the same `kid` (resolved in apply).

use super::{parse_json, Admin, AdminError, Caller, X_SLUICE_VERSION};
use actix_web::{web, HttpRequest, HttpResponse};
use cluster_config::{parse_gateway_json, GatewaySpec};
use serde_json::Value;
use sluice_raft::command::route_id;
use sluice_raft::state::config::redact_secrets;
use sluice_raft::Command;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/config", web::get().to(get_config))
        .route("/config", web::put().to(put_config))
        .route("/services/{name}", web::get().to(get_service))
        .route("/services/{name}", web::put().to(put_service))
        .route("/services/{name}", web::delete().to(delete_service))
        .route("/routes/{id}", web::get().to(get_route))
        .route("/routes/{id}", web::put().to(put_route))
        .route("/routes/{id}", web::delete().to(delete_route));
}

async fn get_config(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
) -> Result<HttpResponse, AdminError> {
    // Shared secrets are never shown back; a PUT of this body keeps them.
    read_one(&admin, &req, "gateway config", |g| {
        Some(serde_json::to_value(redact_secrets(g)))
    })
    .await
}

async fn put_config(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let spec = parse_gateway_json(&body)?;
    admin
        .write_versioned(Command::ReplaceGateway { spec })
        .await
}

/// `GET` of one part of the config: optionally linearizable, 404 when absent.
async fn read_one(
    admin: &Admin,
    req: &HttpRequest,
    what: &str,
    find: impl FnOnce(&GatewaySpec) -> Option<serde_json::Result<Value>>,
) -> Result<HttpResponse, AdminError> {
    let p = admin.read_state(req).await?;
    match find(&p.state.gateway) {
        Some(v) => Ok(HttpResponse::Ok()
            .insert_header((X_SLUICE_VERSION, p.version.to_string()))
            .json(v.unwrap_or(Value::Null))),
        None => Err(AdminError::NotFound(format!("no {what}"))),
    }
}

async fn get_service(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    read_one(&admin, &req, &format!("service {name:?}"), |g| {
        g.services.get(&name).map(serde_json::to_value)
    })
    .await
}

async fn put_service(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    // Parsed as one entry of a whole config, so errors carry the same key paths
    // (`services.<name>.timeout`) as `sluice validate` prints.
    let object: Value = parse_json(&body)?;
    let wrapped = serde_json::json!({ "services": { name.clone(): object } });
    let mut spec = parse_gateway_json(wrapped.to_string().as_bytes())?;
    let spec = spec
        .services
        .remove(&name)
        .ok_or_else(|| AdminError::BadRequest("expected a service object".into()))?;
    admin
        .write_versioned(Command::PutService { name, spec })
        .await
}

async fn delete_service(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let name = path.into_inner();
    admin.write_versioned(Command::DeleteService { name }).await
}

async fn get_route(
    admin: web::Data<Admin>,
    req: HttpRequest,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = percent_decode(&path);
    read_one(&admin, &req, &format!("route {id:?}"), |g| {
        g.routes
            .iter()
            .find(|r| route_id(r) == id)
            .map(serde_json::to_value)
    })
    .await
}

/// Route ids are often paths (`/api/v1/users`): accept them percent-encoded
/// (rate-limit keys too).
pub(super) fn percent_decode(raw: &str) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let b = raw.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn put_route(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let id = percent_decode(&path);
    let object: Value = parse_json(&body)?;
    let wrapped = serde_json::json!({ "routes": [object] });
    let mut spec = parse_gateway_json(wrapped.to_string().as_bytes())?;
    if spec.routes.len() != 1 {
        return Err(AdminError::BadRequest("expected a route object".into()));
    }
    let mut route = spec.routes.remove(0);
    // The URL names the route; a body without an id (or with the path as id) is
    // stored under it.
    if route.id.is_none() && route.path != id {
        route.id = Some(id.clone());
    }
    if route_id(&route) != id {
        return Err(AdminError::BadRequest(format!(
            "route id {:?} in the body differs from {id:?} in the URL",
            route_id(&route)
        )));
    }
    admin.write_versioned(Command::PutRoute { route }).await
}

async fn delete_route(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<String>,
) -> Result<HttpResponse, AdminError> {
    let id = percent_decode(&path);
    admin.write_versioned(Command::DeleteRoute { id }).await
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn route_ids_may_be_percent_encoded_paths() {
        assert_eq!(percent_decode("%2Fapi%2Fv1%2Fusers"), "/api/v1/users");
        assert_eq!(percent_decode("user-by-id"), "user-by-id");
        assert_eq!(percent_decode("bad%zzend%"), "bad%zzend%");
    }
}
