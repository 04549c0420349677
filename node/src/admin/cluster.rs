//! `/admin/cluster`: who the members are and how far each has got; growing and
//! shrinking the voter set (the logic lives in `RaftNode::change_membership`);
//! and `/admin/debug/snapshot`, what this node's data plane currently holds.

use super::{parse_json, written, Admin, AdminError, Caller};
use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};
use sluice_raft::{MembershipChange, MembershipOutcome};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/cluster", web::get().to(cluster_info))
        .route("/cluster/nodes", web::post().to(add_node))
        .route("/cluster/nodes/{id}", web::delete().to(remove_node))
        .route("/debug/snapshot", web::get().to(debug_snapshot));
}

async fn cluster_info(admin: web::Data<Admin>, _: Caller) -> HttpResponse {
    let m = admin.raft.raft().metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<u64> = membership.voter_ids().collect();
    let learners: Vec<u64> = membership.learner_ids().collect();
    let matched = m.replication.clone().unwrap_or_default();
    let nodes: Vec<Value> = membership
        .nodes()
        .map(|(id, node)| {
            let mut v = json!({
                "id": id,
                "addr": node.addr,
                "voter": voters.contains(id),
                "leader": m.current_leader == Some(*id),
            });
            if let Some(log) = matched.get(id) {
                v["matched_index"] = json!(log.map_or(0, |l| l.index));
            }
            v
        })
        .collect();
    let published = admin.current();
    HttpResponse::Ok().json(json!({
        "node_id": m.id,
        "state": format!("{:?}", m.state),
        "leader_id": m.current_leader,
        "term": m.current_term,
        "voters": voters,
        "learners": learners,
        "applied_index": m.last_applied.map_or(0, |l| l.index),
        "last_log_index": m.last_log_index.unwrap_or(0),
        "config_version": published.version,
        "data_plane_version": admin.plane.state.load().applied_index,
        "snapshot_index": m.snapshot.map_or(0, |l| l.index),
        "purged_index": m.purged.map_or(0, |l| l.index),
        "millis_since_quorum_ack": m.millis_since_quorum_ack,
        "nodes": nodes,
    }))
}

#[derive(Deserialize)]
struct NewNode {
    id: u64,
    addr: String,
}

/// Adds a node: first as a learner; once it has caught up, as a voter (200). A
/// learner still catching up after the bounded wait stays one: 202 with its
/// progress, and the same call again promotes it when it has caught up.
async fn add_node(
    admin: web::Data<Admin>,
    _: Caller,
    body: web::Bytes,
) -> Result<HttpResponse, AdminError> {
    let new: NewNode = parse_json(&body)?;
    if new.id == 0 {
        return Err(AdminError::BadRequest("id must be > 0".into()));
    }
    sluice_raft::node::check_peer_addr(&new.addr).map_err(AdminError::BadRequest)?;
    let change = MembershipChange::AddVoter {
        id: new.id,
        addr: new.addr,
    };
    let outcome = admin.raft.change_membership(change).await?;
    Ok(answer(outcome))
}

async fn remove_node(
    admin: web::Data<Admin>,
    _: Caller,
    path: web::Path<u64>,
) -> Result<HttpResponse, AdminError> {
    let change = MembershipChange::RemoveVoter {
        id: path.into_inner(),
    };
    let outcome = admin.raft.change_membership(change).await?;
    Ok(answer(outcome))
}

fn answer(o: MembershipOutcome) -> HttpResponse {
    let mut body = json!({
        "version": o.version,
        "voters": o.voters,
        "learners": o.learners,
    });
    match o.pending {
        None => written(o.version, body),
        Some(p) => {
            body["status"] = json!("learner");
            body["message"] = json!(format!(
                "node {} was added as a learner and has not caught up yet ({} of {} entries); \
                 it becomes a voter when this call is repeated after it has",
                p.id, p.matched_index, p.last_log_index
            ));
            body["progress"] = json!({
                "id": p.id,
                "matched_index": p.matched_index,
                "last_log_index": p.last_log_index,
            });
            let mut r = written(o.version, body);
            *r.status_mut() = actix_web::http::StatusCode::ACCEPTED;
            r
        }
    }
}

/// What this node's data plane holds: the applied index it reflects and, per part,
/// the index it was last rebuilt at and how many entries it has. Counts only:
/// never a secret, a hash or a key id.
async fn debug_snapshot(admin: web::Data<Admin>, _: Caller) -> HttpResponse {
    let state = admin.plane.state.load();
    let gateway = &state.gateway;
    let credentials = &state.credentials;
    HttpResponse::Ok().json(json!({
        "node_id": admin.raft.id(),
        "applied_index": state.applied_index,
        "parts": {
            "gateway": {
                "version": gateway.version,
                "entries": gateway.entries(),
                "services": gateway.config.services.len(),
                "routes": gateway.config.routes.routes().len(),
                "rate_limits": gateway.config.rate_limits.len(),
            },
            "credentials": {
                "version": credentials.version,
                "entries": credentials.clients_total() + credentials.keys_total(),
                "clients": credentials.clients_total(),
                "api_keys": credentials.keys_total(),
                "active_api_keys": credentials.active_keys(),
            },
            "signing_keys": {
                "entries": state.cluster_keys.len(),
                "active_kid": state.cluster_keys.active().map(|k| k.kid.as_str()),
            },
        },
    }))
}
