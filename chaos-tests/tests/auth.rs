//! Credentials across a three-node cluster of real `sluice` processes (issue 8):
//! an API key written through one node is honoured and, once revoked, refused by
//! every node (with the time that takes, measured); an OAuth token issued by one
//! node opens routes on the others, survives a signing-key rotation, and dies
//! with its client; a token signed by a key the cluster does not own is refused.
//! Measurements are printed with a `MEASURED` prefix: run with `-- --nocapture`.

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sluice_testkit::{wait_for_async, KeyPair, Seen};
use std::time::{Duration, Instant};
use support::{send, Answer, Cluster};

const ALL: [u64; 3] = [1, 2, 3];

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The version a write answered with (`version` in the body, else the
/// `X-Sluice-Version` header).
fn version_of(a: &Answer) -> u64 {
    a.body["version"]
        .as_u64()
        .or_else(|| a.header("x-sluice-version").and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| panic!("no version in the answer to a write: {a:?}"))
}

/// Starts three nodes and adds, through the admin API, the routes these tests
/// use (all to the seeded `echo` service): `/public/*` (`auth: none`),
/// `/secure/*` (`auth: api_key`) and `/tokens/*` (`auth: jwt`, which takes the
/// tokens the cluster issues); returns once every node serves them.
async fn cluster_with_auth_routes(tag: &str) -> Cluster {
    let mut c = Cluster::configure(tag, 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    c.wait_agreed_leader(&ALL, 30).await;
    // Routes naming `echo` are refused until the YAML seed (which defines it) is in.
    wait_for_async(
        "node 1's replicated config to hold the seeded service echo",
        secs(20),
        &c,
        || async {
            let a = c.admin_get(1, "/admin/config").await?;
            if a.body["services"]["echo"].is_object() {
                Ok(())
            } else {
                Err(format!("{} {}", a.status, a.text))
            }
        },
    )
    .await;
    let mut version = 0;
    for (id, auth) in [("public", "none"), ("secure", "api_key"), ("tokens", "jwt")] {
        let body = json!({ "path": format!("/{id}/*"), "service": "echo", "auth": auth });
        let path = format!("/admin/routes/{id}");
        let a = wait_for_async(
            format!("PUT {path} to be accepted"),
            secs(20),
            &c,
            || async {
                match c.admin_put(1, &path, &body).await {
                    Ok(a) if a.status == 200 => Ok(a),
                    other => Err(other.map(|a| format!("{} {}", a.status, a.text))),
                }
            },
        )
        .await;
        version = version.max(version_of(&a));
    }
    c.wait_version(&ALL, version, 20).await;
    for id in ALL {
        let a = data(&c, id, "/public/ready", &[]).await;
        assert_eq!(
            a.status,
            200,
            "node {id} /public/ready: {a:?}\n{}",
            c.logs()
        );
    }
    c
}

/// `GET path` on node `id`'s data plane with `headers`.
async fn data(c: &Cluster, id: u64, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = c.client().get(c.data_url(id, path));
    for (n, v) in headers {
        req = req.append_header((*n, *v));
    }
    send(req, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on node {id}: {e}\n{}", c.logs()))
}

/// Polls node `id` until `GET path` with `headers` answers `status`; returns it.
async fn wait_status(
    c: &Cluster,
    id: u64,
    path: &str,
    headers: &[(&str, &str)],
    status: u16,
) -> Answer {
    wait_for_async(
        format!("node {id}: GET {path} to answer {status}"),
        secs(10),
        c,
        || async {
            let a = data(c, id, path, headers).await;
            if a.status == status {
                Ok(a)
            } else {
                Err(Seen(format!("{} {}", a.status, a.text)))
            }
        },
    )
    .await
}

/// A 401 with the JSON error shape and a `Bearer` challenge.
fn assert_401(a: &Answer, what: &str) {
    assert_eq!(
        a.status, 401,
        "{what}: want 401, got {} {}",
        a.status, a.text
    );
    assert_eq!(a.body["error"], "unauthorized", "{what}: {}", a.text);
    assert!(
        a.header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{what}: WWW-Authenticate {:?}",
        a.header("www-authenticate")
    );
}

/// Creates an API client through node `via`; returns (client_id, secret, version).
async fn new_client(
    c: &Cluster,
    via: u64,
    roles: &[&str],
    scopes: &[&str],
) -> (String, String, u64) {
    let body = json!({ "name": "auth-test", "roles": roles, "scopes": scopes });
    let a = c
        .admin_call(via, "POST", "/admin/clients", Some(&body))
        .await
        .expect("POST /admin/clients");
    assert_eq!(a.status, 200, "POST /admin/clients: {a:?}\n{}", c.logs());
    (
        a.body["client_id"].as_str().expect("client_id").to_owned(),
        a.body["client_secret"]
            .as_str()
            .expect("client_secret")
            .to_owned(),
        version_of(&a),
    )
}

/// Issues an API key through node `via`; returns (key id, key).
async fn new_key(c: &Cluster, via: u64, client_id: &str) -> (String, String) {
    let body = json!({ "client_id": client_id });
    let a = c
        .admin_call(via, "POST", "/admin/keys", Some(&body))
        .await
        .expect("POST /admin/keys");
    assert_eq!(a.status, 200, "POST /admin/keys: {a:?}\n{}", c.logs());
    (
        a.body["id"].as_str().expect("key id").to_owned(),
        a.body["key"].as_str().expect("key").to_owned(),
    )
}

/// `DELETE path` through node `via`; panics unless 200.
async fn admin_delete(c: &Cluster, via: u64, path: &str) -> Answer {
    let a = c
        .admin_call(via, "DELETE", path, None)
        .await
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    assert_eq!(a.status, 200, "DELETE {path}: {a:?}\n{}", c.logs());
    a
}

// --------------------------------------------------------------- API keys ----

/// A key created through one node opens the `api_key` route on every node as its
/// client; revoked through another, every node refuses it.
#[actix_rt::test]
async fn an_api_key_works_on_every_node_until_revoked() {
    let c = cluster_with_auth_routes("auth-key").await;
    for id in ALL {
        let a = data(&c, id, "/secure/x", &[]).await;
        assert_401(&a, &format!("node {id} without a key"));
    }
    let (client_id, _, _) = new_client(&c, 2, &["reader"], &[]).await;
    let (key_id, key) = new_key(&c, 3, &client_id).await;
    for id in ALL {
        let a = wait_status(&c, id, "/secure/x", &[("x-api-key", &key)], 200).await;
        let h = &a.body["headers"];
        assert_eq!(h["x-user-id"], client_id.as_str(), "node {id}: {}", a.text);
        assert_eq!(
            h["x-client-id"],
            client_id.as_str(),
            "node {id}: {}",
            a.text
        );
        assert_eq!(h["x-user-roles"], "reader", "node {id}: {}", a.text);
        assert!(h.get("x-api-key").is_none(), "node {id} forwarded the key");
    }

    admin_delete(&c, 1, &format!("/admin/keys/{key_id}")).await;
    for id in ALL {
        let a = wait_status(&c, id, "/secure/x", &[("x-api-key", &key)], 401).await;
        assert_401(&a, &format!("node {id}, revoked key"));
    }
    for id in ALL {
        let a = data(&c, id, "/public/x", &[]).await;
        assert_eq!(a.status, 200, "node {id} public route: {a:?}");
    }
}

/// Over 50 revocations (each written through a different node than the last),
/// how long from the revocation's 200 until all three nodes refuse the key.
#[actix_rt::test]
async fn revocation_reaches_every_node_measured() {
    const RUNS: usize = 50;
    let c = cluster_with_auth_routes("auth-revoke").await;
    let (client_id, _, _) = new_client(&c, 1, &[], &[]).await;
    let mut took = Vec::with_capacity(RUNS);
    for run in 0..RUNS {
        let creator = ALL[run % 3];
        let revoker = ALL[(run + 1) % 3];
        let (key_id, key) = new_key(&c, creator, &client_id).await;
        for id in ALL {
            wait_status(&c, id, "/secure/m", &[("x-api-key", &key)], 200).await;
        }
        let path = format!("/admin/keys/{key_id}");
        admin_delete(&c, revoker, &path).await;
        let revoked = Instant::now();
        // Poll every node back to back (no pause: the interval is what is measured)
        // until each has answered 401 once.
        let mut pending: Vec<u64> = ALL.to_vec();
        while !pending.is_empty() {
            assert!(
                revoked.elapsed() < secs(10),
                "run {run}: 10 s after the revocation nodes {pending:?} still accept the key\n{}",
                c.logs()
            );
            let mut still = Vec::new();
            for id in pending {
                if data(&c, id, "/secure/m", &[("x-api-key", &key)])
                    .await
                    .status
                    != 401
                {
                    still.push(id);
                }
            }
            pending = still;
        }
        took.push(revoked.elapsed());
        // In force means it stays in force.
        for id in ALL {
            let a = data(&c, id, "/secure/m", &[("x-api-key", &key)]).await;
            assert_401(&a, &format!("run {run}: node {id} after the revocation"));
        }
    }
    took.sort();
    let pct = |p: f64| took[((p * RUNS as f64).ceil() as usize).clamp(1, RUNS) - 1];
    eprintln!(
        "MEASURED revocation in force on all nodes: p50={:?} p99={:?} (min {:?}, max {:?}, n={RUNS}, \
         from the DELETE's 200 until all 3 nodes answer 401)",
        pct(0.50),
        pct(0.99),
        took[0],
        took[RUNS - 1]
    );
}

// ------------------------------------------------------------------ OAuth ----

/// `POST /oauth/token` on node `id` with HTTP Basic client authentication.
async fn issue(c: &Cluster, id: u64, client_id: &str, secret: &str) -> Answer {
    let basic = STANDARD.encode(format!("{client_id}:{secret}"));
    let req = c
        .client()
        .post(c.data_url(id, "/oauth/token"))
        .insert_header(("authorization", format!("Basic {basic}")))
        .content_type("application/x-www-form-urlencoded");
    send(req, Some(b"grant_type=client_credentials".to_vec()))
        .await
        .unwrap_or_else(|e| panic!("POST /oauth/token on node {id}: {e}\n{}", c.logs()))
}

/// A token issued by node `id`, asserting the 200.
async fn token(c: &Cluster, id: u64, client_id: &str, secret: &str) -> String {
    let a = issue(c, id, client_id, secret).await;
    assert_eq!(a.status, 200, "token from node {id}: {a:?}\n{}", c.logs());
    a.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// The decoded header and payload of a compact JWS (not verified).
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next = || -> Value {
        let seg = it.next().unwrap_or_else(|| panic!("not a JWS: {token}"));
        let bytes = URL_SAFE_NO_PAD.decode(seg).expect("base64url segment");
        serde_json::from_slice(&bytes).expect("JSON segment")
    };
    (next(), next())
}

fn kid(token: &str) -> String {
    parts(token).0["kid"]
        .as_str()
        .unwrap_or_else(|| panic!("no kid in the header of {token}"))
        .to_owned()
}

/// The kids node `id` publishes at `/.well-known/jwks.json`.
async fn jwks_kids(c: &Cluster, id: u64) -> Result<Vec<String>, String> {
    let a = c.data_get(id, "/.well-known/jwks.json").await?;
    if a.status != 200 {
        return Err(format!("{} {}", a.status, a.text));
    }
    Ok(a.body["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
        .collect())
}

/// A token for client `client_id` issued by node 1 opens `/tokens/*` on every
/// node; after the signing key is rotated through node 3 the old token still does,
/// a new one carries the new kid, and both keys are published everywhere. Tokens
/// with the same claims signed by a foreign EC key — under a made-up kid or the
/// cluster's own — are refused. Once the client is deleted its tokens are refused
/// on every node.
#[actix_rt::test]
async fn oauth_tokens_work_across_nodes_survive_rotation_and_die_with_their_client() {
    let c = cluster_with_auth_routes("auth-oauth").await;
    let (client_id, secret, _) = new_client(&c, 2, &["svc"], &["read", "write"]).await;
    // The client is on every node's data plane once a key of its own works there.
    let (_, key) = new_key(&c, 3, &client_id).await;
    for id in ALL {
        wait_status(&c, id, "/secure/ready", &[("x-api-key", &key)], 200).await;
    }
    // The cluster's signing key is generated and replicated once at start.
    wait_for_async("node 1 to publish a signing key", secs(20), &c, || async {
        jwks_kids(&c, 1).await.and_then(|k| {
            if k.is_empty() {
                Err("no keys".to_owned())
            } else {
                Ok(())
            }
        })
    })
    .await;

    for id in ALL {
        let a = data(&c, id, "/tokens/x", &[]).await;
        assert_401(&a, &format!("node {id} without a token"));
    }
    let old = token(&c, 1, &client_id, &secret).await;
    let old_kid = kid(&old);
    let old_auth = format!("Bearer {old}");
    for id in ALL {
        let a = data(&c, id, "/tokens/x", &[("authorization", &old_auth)]).await;
        assert_eq!(
            a.status,
            200,
            "node 1's token on node {id}: {a:?}\n{}",
            c.logs()
        );
        let h = &a.body["headers"];
        assert_eq!(h["x-user-id"], client_id.as_str(), "node {id}: {}", a.text);
        assert_eq!(
            h["x-client-id"],
            client_id.as_str(),
            "node {id}: {}",
            a.text
        );
        assert_eq!(h["x-user-roles"], "svc", "node {id}: {}", a.text);
    }

    // Rotate through node 3.
    let r = c
        .admin_call(3, "POST", "/admin/signing-keys/rotate", Some(&json!({})))
        .await
        .expect("POST /admin/signing-keys/rotate");
    assert_eq!(r.status, 200, "rotate: {r:?}\n{}", c.logs());
    let new_kid = r.body["kid"]
        .as_str()
        .expect("kid of the new key")
        .to_owned();
    assert_ne!(new_kid, old_kid, "rotation kept the kid");
    c.wait_applied(&ALL, version_of(&r), 10).await;
    // Every node publishes both keys: the new one signs, the old one still verifies.
    for id in ALL {
        wait_for_async(
            format!("node {id} to publish kids {old_kid} and {new_kid}"),
            secs(10),
            &c,
            || async {
                let kids = jwks_kids(&c, id).await?;
                if kids.contains(&old_kid) && kids.contains(&new_kid) {
                    Ok(())
                } else {
                    Err(format!("{kids:?}"))
                }
            },
        )
        .await;
    }

    let new = token(&c, 2, &client_id, &secret).await;
    assert_eq!(kid(&new), new_kid, "a token issued after the rotation");
    let new_auth = format!("Bearer {new}");
    for id in ALL {
        for (which, auth) in [("old", &old_auth), ("new", &new_auth)] {
            let a = data(&c, id, "/tokens/x", &[("authorization", auth)]).await;
            assert_eq!(
                a.status,
                200,
                "{which} token on node {id}: {a:?}\n{}",
                c.logs()
            );
        }
    }

    // The same claims, signed by a key that is not the cluster's.
    let foreign = KeyPair::ec_p256();
    let foreign_key =
        EncodingKey::from_ec_pem(foreign.private_pem.as_bytes()).expect("foreign EC key");
    let claims = parts(&new).1;
    for forged_kid in ["made-up-kid", new_kid.as_str(), old_kid.as_str()] {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(forged_kid.to_owned());
        let forged = jsonwebtoken::encode(&header, &claims, &foreign_key).expect("sign");
        let auth = format!("Bearer {forged}");
        for id in ALL {
            let a = data(&c, id, "/tokens/x", &[("authorization", &auth)]).await;
            assert_401(
                &a,
                &format!("node {id}: foreign key under kid {forged_kid}"),
            );
        }
    }

    // Delete the client through node 2: its tokens die everywhere.
    let d = admin_delete(&c, 2, &format!("/admin/clients/{client_id}")).await;
    c.wait_applied(&ALL, version_of(&d), 10).await;
    for id in ALL {
        for (which, auth) in [("old", &old_auth), ("new", &new_auth)] {
            let a = wait_status(&c, id, "/tokens/x", &[("authorization", auth)], 401).await;
            assert_401(&a, &format!("node {id}: {which} token of a deleted client"));
        }
    }
    let a = issue(&c, 3, &client_id, &secret).await;
    assert_eq!(a.status, 401, "a deleted client asks for a token: {a:?}");
    assert_eq!(a.body["error"], "invalid_client", "{}", a.text);
}
