//! Authentication and authorisation on one node (issue 8), checked from the
//! outside: a real gateway, a real upstream (`sluice echo-server`, or the kit's
//! `Recorder` where every header line the upstream received matters), tokens made
//! with a real JWT library (`jsonwebtoken`) from key pairs `openssl` generates for
//! this run, and an HS256 secret. Requests an HTTP client would tidy up (dot
//! segments, `%2e`, header names with underscores) go over raw TCP.
//!
//! What every test leans on: a route is public only when it says `auth: none`; a
//! refused request is 401 (credential) or 403 (role) with the JSON error shape and
//! never reaches the upstream; the upstream sees the gateway's identity headers
//! and never a client's.

mod support;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use sluice_testkit::{
    client, raw_request, send, wait_for_async, Answer, Echo, KeyPair, Logs, RawAnswer, Recorder,
    Seen,
};
use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{echo, Gateway};

const ADMIN_TOKEN: &str = "auth-tests-admin-token";
/// `auth.jwt.issuer` / `audience` of every gateway here.
const ISSUER: &str = "https://id.sluice.test";
const AUDIENCE: &str = "sluice-tests";
const HS_SECRET: &str = "hs1-secret-of-the-auth-tests-0123456789abcdef";
/// The cluster's own issuer when `auth.oauth.issuer` is not set.
const CLUSTER_ISSUER: &str = "sluice";

// ------------------------------------------------------------------ keys ----

/// Key pairs made once per test binary: `rsa`/`ec` are configured as `rsa1`/`ec1`;
/// the `other_*` ones are nobody's.
struct Keys {
    rsa: KeyPair,
    ec: KeyPair,
    other_rsa: KeyPair,
    other_ec: KeyPair,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa: KeyPair::rsa2048(),
        ec: KeyPair::ec_p256(),
        other_rsa: KeyPair::rsa2048(),
        other_ec: KeyPair::ec_p256(),
    })
}

fn rsa_key(k: &KeyPair) -> EncodingKey {
    EncodingKey::from_rsa_pem(k.private_pem.as_bytes()).expect("RSA private key")
}

fn ec_key(k: &KeyPair) -> EncodingKey {
    EncodingKey::from_ec_pem(k.private_pem.as_bytes()).expect("EC private key")
}

// ---------------------------------------------------------------- tokens ----

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Valid claims for `sub` against the configured issuer and audience (10 min).
fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "iss": ISSUER, "aud": AUDIENCE, "iat": now(), "exp": now() + 600 })
}

/// `c` with `key` set to `v`.
fn with(mut c: Value, key: &str, v: Value) -> Value {
    c[key] = v;
    c
}

/// `c` without `key`.
fn without(mut c: Value, key: &str) -> Value {
    c.as_object_mut().expect("claims object").remove(key);
    c
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign token")
}

/// Signed by the configured RSA key, kid `rsa1`.
fn rs256(c: &Value) -> String {
    sign(Algorithm::RS256, Some("rsa1"), c, &rsa_key(&keys().rsa))
}

/// Signed with the configured secret, kid `hs1`.
fn hs256(c: &Value) -> String {
    sign(
        Algorithm::HS256,
        Some("hs1"),
        c,
        &EncodingKey::from_secret(HS_SECRET.as_bytes()),
    )
}

/// Signed by the configured EC key, kid `ec1`.
fn es256(c: &Value) -> String {
    sign(Algorithm::ES256, Some("ec1"), c, &ec_key(&keys().ec))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The three segments of a compact JWS.
fn segments(token: &str) -> (&str, &str, &str) {
    let mut it = token.splitn(3, '.');
    match (it.next(), it.next(), it.next()) {
        (Some(h), Some(p), Some(s)) => (h, p, s),
        _ => panic!("not a JWS: {token}"),
    }
}

/// `token` with its payload swapped for `claims`, header and signature kept.
fn with_payload(token: &str, claims: &Value) -> String {
    let (h, _, s) = segments(token);
    format!("{h}.{}.{s}", b64(claims.to_string().as_bytes()))
}

/// `token` with one bit of its signature flipped.
fn with_flipped_signature(token: &str) -> String {
    let (h, p, s) = segments(token);
    let mut sig = URL_SAFE_NO_PAD.decode(s).expect("signature base64url");
    let mid = sig.len() / 2;
    sig[mid] ^= 0x01;
    format!("{h}.{p}.{}", b64(&sig))
}

/// An unsigned token (`alg` as given, empty signature).
fn unsigned(alg: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = json!({ "alg": alg, "typ": "JWT" });
    if let Some(kid) = kid {
        header["kid"] = json!(kid);
    }
    format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The decoded JSON of a token's header and payload (no verification).
fn decode_parts(token: &str) -> (Value, Value) {
    let (h, p, _) = segments(token);
    let part = |s: &str| -> Value {
        let bytes = URL_SAFE_NO_PAD.decode(s).expect("base64url segment");
        serde_json::from_slice(&bytes).expect("JSON segment")
    };
    (part(h), part(p))
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

// ---------------------------------------------------------------- config ----

fn services(echo: &Echo, recorder: Option<&Recorder>) -> String {
    let mut s = format!(
        "services:\n  public: {{ upstreams: [{u}/public] }}\n  users: {{ upstreams: [{u}/users] }}\n",
        u = echo.url()
    );
    if let Some(r) = recorder {
        s.push_str(&format!("  raw: {{ upstreams: [{}] }}\n", r.url()));
    }
    s
}

/// The routes every gateway here has; `extra` (route lines) is appended. The
/// upstream's base path (`/public`, `/users`) shows which route forwarded.
fn routes(extra: &str) -> String {
    format!(
        "routes:
  - {{ path: /static/*, service: public, auth: none }}
  - {{ path: /api/v1/users/:id, service: users, auth: jwt }}
  - {{ path: /keyed/*, service: users, auth: api_key }}
  - {{ path: /either/*, service: users, auth: any }}
  - {{ path: /admin-area/*, service: users, auth: jwt, roles: [admin] }}
  - {{ path: /staff/*, service: users, auth: any, roles: [admin] }}
  - {{ path: /orders/*, service: users, auth: jwt, roles: [orders] }}
{extra}"
    )
}

/// `auth:` with the configured issuer, audience, 30 s leeway and keys `rsa1`
/// (RS256) and `hs1` (HS256); `jwt_extra` (lines under `jwt:`) and `keys_extra`
/// (key lines) are added.
fn auth(jwt_extra: &str, keys_extra: &str) -> String {
    format!(
        "auth:
  jwt:
    issuer: {ISSUER}
    audience: {AUDIENCE}
    leeway: 30s
{jwt_extra}    keys:
      - {{ kid: rsa1, alg: RS256, public_key_file: rsa1.pub.pem }}
      - {{ kid: hs1, alg: HS256, secret: \"{HS_SECRET}\" }}
{keys_extra}"
    )
}

/// Starts a gateway on these files plus the admin token and the public keys
/// (`rsa1.pub.pem`, `ec1.pub.pem`); returns once the public route answers.
async fn gateway(services: &str, routes: &str, auth: &str) -> Gateway {
    let k = keys();
    let gw = Gateway::start(&[
        ("services.yaml", services),
        ("routes.yaml", routes),
        ("auth.yaml", auth),
        ("admin.yaml", &format!("admin:\n  token: {ADMIN_TOKEN}\n")),
        ("rsa1.pub.pem", &k.rsa.public_pem),
        ("ec1.pub.pem", &k.ec.public_pem),
    ]);
    wait_for_async(
        "the public route /static/* to answer 200",
        Duration::from_secs(20),
        &gw,
        || async {
            match send(http().get(gw.url("/static/ready")), None).await {
                Ok(a) if a.status == 200 => Ok(()),
                other => Err(other.map(|a| format!("{} {}", a.status, a.text))),
            }
        },
    )
    .await;
    gw
}

// ------------------------------------------------------------------ HTTP ----

fn http() -> awc::Client {
    client(Duration::from_secs(30))
}

/// `GET path` on the data plane with `headers` (each appended as given).
async fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = http().get(gw.url(path));
    for (n, v) in headers {
        req = req.append_header((*n, *v));
    }
    send(req, None)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", gw.logs()))
}

/// `GET target` over raw TCP (the path exactly as written).
fn raw_get(gw: &Gateway, target: &str, headers: &[(&str, &str)]) -> RawAnswer {
    raw_request(gw.port, "GET", target, headers, None)
        .unwrap_or_else(|e| panic!("raw GET {target}: {e}\n{}", gw.logs()))
}

/// How many proxied requests the echo upstream has seen.
async fn upstream_hits(echo: &Echo) -> u64 {
    let a = send(http().get(format!("{}/_control/stats", echo.url())), None)
        .await
        .expect("echo stats");
    a.body["requests"].as_u64().expect("echo stats count")
}

/// An admin call (`GET`, `POST` with a JSON body, `DELETE`), sent again while the
/// node has no leader yet (503) or its admin listener is not up.
async fn admin(gw: &Gateway, method: &str, path: &str, body: Option<Value>) -> Answer {
    wait_for_async(
        format!("{method} {path} on the admin API to be answered (not 503)"),
        Duration::from_secs(20),
        gw,
        || async {
            let c = http();
            let url = gw.admin_url(path);
            let req = match method {
                "GET" => c.get(url),
                "POST" => c.post(url),
                "DELETE" => c.delete(url),
                other => panic!("admin: unsupported method {other}"),
            }
            .bearer_auth(ADMIN_TOKEN);
            let sent = match &body {
                Some(b) => {
                    send(
                        req.content_type("application/json"),
                        Some(b.to_string().into_bytes()),
                    )
                    .await
                }
                None => send(req, None).await,
            };
            match sent {
                Ok(a) if a.status != 503 => Ok(a),
                other => Err(other.map(|a| format!("{} {}", a.status, a.text))),
            }
        },
    )
    .await
}

/// Creates an API client; returns (client_id, client_secret).
async fn new_client(gw: &Gateway, name: &str, roles: &[&str], scopes: &[&str]) -> (String, String) {
    let a = admin(
        gw,
        "POST",
        "/admin/clients",
        Some(json!({ "name": name, "roles": roles, "scopes": scopes })),
    )
    .await;
    assert_eq!(a.status, 200, "POST /admin/clients: {a:?}");
    let id = a.body["client_id"].as_str().expect("client_id").to_owned();
    let secret = a.body["client_secret"]
        .as_str()
        .expect("client_secret")
        .to_owned();
    (id, secret)
}

/// Issues an API key for `client_id`; returns (key id, key).
async fn new_key(gw: &Gateway, client_id: &str) -> (String, String) {
    let a = admin(
        gw,
        "POST",
        "/admin/keys",
        Some(json!({ "client_id": client_id })),
    )
    .await;
    assert_eq!(a.status, 200, "POST /admin/keys: {a:?}");
    (
        a.body["id"].as_str().expect("key id").to_owned(),
        a.body["key"].as_str().expect("key").to_owned(),
    )
}

/// Polls `GET path` with `headers` until it answers `status` (a credential just
/// written reaching the data plane, a revocation taking effect); returns it.
async fn wait_status(gw: &Gateway, path: &str, headers: &[(&str, &str)], status: u16) -> Answer {
    wait_for_async(
        format!("GET {path} to answer {status}"),
        Duration::from_secs(10),
        gw,
        || async {
            let a = get(gw, path, headers).await;
            if a.status == status {
                Ok(a)
            } else {
                Err(Seen(format!("{} {}", a.status, a.text)))
            }
        },
    )
    .await
}

/// `POST /oauth/token` with a form body, authenticated by HTTP Basic when `basic`.
async fn token_request(gw: &Gateway, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> Answer {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = http()
        .post(gw.url("/oauth/token"))
        .content_type("application/x-www-form-urlencoded");
    if let Some((id, secret)) = basic {
        let creds = STANDARD.encode(format!("{id}:{secret}"));
        req = req.insert_header(("authorization", format!("Basic {creds}")));
    }
    send(req, Some(body.into_bytes()))
        .await
        .unwrap_or_else(|e| panic!("POST /oauth/token: {e}\n{}", gw.logs()))
}

// ------------------------------------------------------------- asserting ----

/// What a 401's `WWW-Authenticate` must say.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Www {
    /// No credential came: `Bearer` without an error code (RFC 6750 §3.1).
    Plain,
    /// A token came and is bad: `Bearer ... error="invalid_token"`.
    InvalidToken,
    /// `Bearer`, error code or not (an API key, an empty or non-Bearer header).
    Bearer,
}

/// A 401 with the JSON error shape and the right challenge.
fn assert_unauthorized(status: u16, body: &Value, www: Option<&str>, want: Www, what: &str) {
    assert_eq!(status, 401, "{what}: want 401, got {status} {body}");
    assert_eq!(body["error"], "unauthorized", "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no message in {body}"
    );
    assert!(
        body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: no request_id in {body}"
    );
    let www = www.unwrap_or_else(|| panic!("{what}: 401 without WWW-Authenticate"));
    assert!(
        www.starts_with("Bearer"),
        "{what}: WWW-Authenticate {www:?}"
    );
    match want {
        Www::Plain => assert!(
            !www.contains("error="),
            "{what}: no credential was sent, yet WWW-Authenticate names an error: {www:?}"
        ),
        Www::InvalidToken => assert!(
            www.contains("error=\"invalid_token\""),
            "{what}: WWW-Authenticate {www:?} lacks error=\"invalid_token\""
        ),
        Www::Bearer => {}
    }
}

fn assert_401(a: &Answer, want: Www, what: &str) {
    assert_unauthorized(a.status, &a.body, a.header("www-authenticate"), want, what);
}

fn assert_403(a: &Answer, what: &str) {
    assert_eq!(
        a.status, 403,
        "{what}: want 403, got {} {}",
        a.status, a.text
    );
    assert_eq!(a.body["error"], "forbidden", "{what}: {}", a.text);
    assert!(a.body["message"].as_str().is_some(), "{what}: {}", a.text);
    assert!(
        a.body["request_id"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {}",
        a.text
    );
}

/// A 200 from the echo upstream at `upstream_path` (e.g. `/users/api/v1/users/7`).
fn assert_proxied(a: &Answer, upstream_path: &str, what: &str) {
    assert_eq!(
        a.status, 200,
        "{what}: want 200, got {} {}",
        a.status, a.text
    );
    assert_eq!(a.body["path"], upstream_path, "{what}: {}", a.text);
}

/// The `X-User-Roles` the upstream saw, split on commas.
fn upstream_roles(a: &Answer) -> Vec<String> {
    a.body["headers"]["x-user-roles"]
        .as_str()
        .map(|s| s.split(',').map(|r| r.trim().to_owned()).collect())
        .unwrap_or_default()
}

// ------------------------------------------------------------------ JWT ----

/// Valid RS256 and HS256 tokens pass, with `sub` as `X-User-ID`, exp/nbf within
/// the leeway included, and a token just under the size limit; every forged,
/// expired, foreign, mis-addressed, unsigned, confused, oversized or garbled one is
/// a 401 with `error="invalid_token"` that never reaches the upstream.
#[actix_rt::test]
async fn jwt_matrix_only_valid_tokens_pass() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let path = "/api/v1/users/7";
    let k = keys();

    let big = rs256(&with(claims("big"), "pad", json!("x".repeat(5000))));
    assert!(
        (6000..8192).contains(&big.len()),
        "a token under the 8 KiB limit: {}",
        big.len()
    );
    let valid = [
        ("RS256", rs256(&claims("alice")), "alice"),
        ("HS256", hs256(&claims("bob")), "bob"),
        (
            "expired 5 s ago, within the 30 s leeway",
            rs256(&with(claims("carol"), "exp", json!(now() - 5))),
            "carol",
        ),
        (
            "nbf 5 s ahead, within the 30 s leeway",
            rs256(&with(claims("dave"), "nbf", json!(now() + 5))),
            "dave",
        ),
        (
            "aud as an array holding the audience",
            rs256(&with(claims("erin"), "aud", json!(["other", AUDIENCE]))),
            "erin",
        ),
        ("a 6-8 KiB token", big, "big"),
    ];
    for (what, token, sub) in &valid {
        let a = get(&gw, path, &[("authorization", &bearer(token))]).await;
        assert_proxied(&a, "/users/api/v1/users/7", what);
        assert_eq!(a.body["headers"]["x-user-id"], *sub, "{what}: {}", a.text);
    }

    let before = upstream_hits(&echo).await;
    let a = get(&gw, path, &[]).await;
    assert_401(&a, Www::Plain, "no credential");

    let good = rs256(&claims("alice"));
    let hs_confusion = |secret: &[u8]| {
        sign(
            Algorithm::HS256,
            Some("rsa1"),
            &claims("alice"),
            &EncodingKey::from_secret(secret),
        )
    };
    let oversized = rs256(&with(claims("alice"), "pad", json!("x".repeat(9000))));
    assert!(oversized.len() > 8192, "oversized: {}", oversized.len());
    let refused: Vec<(&str, String)> = vec![
        (
            "expired 120 s ago (beyond the leeway)",
            rs256(&with(claims("alice"), "exp", json!(now() - 120))),
        ),
        (
            "not valid for another 120 s (nbf beyond the leeway)",
            rs256(&with(claims("alice"), "nbf", json!(now() + 120))),
        ),
        (
            "tampered payload (sub and roles changed, signature kept)",
            with_payload(&good, &with(claims("root"), "roles", json!(["admin"]))),
        ),
        ("tampered signature", with_flipped_signature(&good)),
        (
            "signed by another RSA key under kid rsa1",
            sign(
                Algorithm::RS256,
                Some("rsa1"),
                &claims("alice"),
                &rsa_key(&k.other_rsa),
            ),
        ),
        (
            "HS256 with the wrong secret under kid hs1",
            sign(
                Algorithm::HS256,
                Some("hs1"),
                &claims("alice"),
                &EncodingKey::from_secret(b"not-the-secret"),
            ),
        ),
        (
            "wrong issuer",
            rs256(&with(claims("alice"), "iss", json!("https://evil.example"))),
        ),
        (
            "the cluster's own issuer on a configured key",
            rs256(&with(claims("alice"), "iss", json!(CLUSTER_ISSUER))),
        ),
        ("no issuer", rs256(&without(claims("alice"), "iss"))),
        (
            "wrong audience",
            rs256(&with(claims("alice"), "aud", json!("someone-else"))),
        ),
        ("no audience", rs256(&without(claims("alice"), "aud"))),
        (
            "alg none naming kid rsa1",
            unsigned("none", Some("rsa1"), &claims("alice")),
        ),
        (
            "alg none without kid",
            unsigned("none", None, &claims("alice")),
        ),
        (
            "alg None (odd case) naming kid hs1",
            unsigned("None", Some("hs1"), &claims("alice")),
        ),
        (
            "RS256 -> HS256 confusion: HMAC keyed with the RSA public key PEM",
            hs_confusion(k.rsa.public_pem.as_bytes()),
        ),
        (
            "RS256 -> HS256 confusion: the PEM without its final newline",
            hs_confusion(k.rsa.public_pem.trim_end().as_bytes()),
        ),
        (
            "RS256 header naming the HS256 key hs1",
            sign(
                Algorithm::RS256,
                Some("hs1"),
                &claims("alice"),
                &rsa_key(&k.rsa),
            ),
        ),
        (
            "missing kid",
            sign(Algorithm::RS256, None, &claims("alice"), &rsa_key(&k.rsa)),
        ),
        (
            "unknown kid",
            sign(
                Algorithm::RS256,
                Some("rsa9"),
                &claims("alice"),
                &rsa_key(&k.rsa),
            ),
        ),
        ("oversized (over 8192 bytes, validly signed)", oversized),
        ("garbage: not a JWT", "not-a-jwt".to_owned()),
        ("garbage: three junk segments", "a.b.c".to_owned()),
        ("garbage: non-base64 segments", "%%%.$$$.###".to_owned()),
        (
            "garbage: header segment is not JSON",
            format!(
                "{}.{}",
                b64(b"{not json"),
                good.split_once('.')
                    .map(|(_, rest)| rest)
                    .unwrap_or_default()
            ),
        ),
        (
            "garbage: two segments",
            good.rsplit_once('.')
                .map(|(hp, _)| hp.to_owned())
                .unwrap_or_default(),
        ),
        ("garbage: four segments", format!("{good}.AAAA")),
    ];
    for (what, token) in &refused {
        let a = get(&gw, path, &[("authorization", &bearer(token))]).await;
        assert_401(&a, Www::InvalidToken, what);
    }
    for (what, value) in [
        ("Authorization: Bearer with no token", "Bearer".to_owned()),
        (
            "Authorization: Basic on a JWT route",
            format!("Basic {}", STANDARD.encode("alice:secret")),
        ),
        ("a token without the Bearer scheme", good.clone()),
    ] {
        let a = get(&gw, path, &[("authorization", &value)]).await;
        assert_401(&a, Www::Bearer, what);
    }
    assert_eq!(
        upstream_hits(&echo).await,
        before,
        "a refused request reached the upstream"
    );
}

/// An `ES256` key in the config is accepted (it is refused today) and verifies
/// tokens signed by its private half only, under its own kid.
#[actix_rt::test]
async fn es256_keys_verify_their_tokens() {
    let echo = echo();
    let ec = "      - { kid: ec1, alg: ES256, public_key_file: ec1.pub.pem }\n";
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", ec)).await;
    let path = "/api/v1/users/9";

    let a = get(
        &gw,
        path,
        &[("authorization", &bearer(&es256(&claims("frank"))))],
    )
    .await;
    assert_proxied(&a, "/users/api/v1/users/9", "ES256");
    assert_eq!(a.body["headers"]["x-user-id"], "frank", "{}", a.text);

    let k = keys();
    for (what, token) in [
        (
            "ES256 by another EC key under kid ec1",
            sign(
                Algorithm::ES256,
                Some("ec1"),
                &claims("frank"),
                &ec_key(&k.other_ec),
            ),
        ),
        (
            "ES256 by the EC key under the RSA key's kid",
            sign(
                Algorithm::ES256,
                Some("rsa1"),
                &claims("frank"),
                &ec_key(&k.ec),
            ),
        ),
        (
            "tampered ES256 signature",
            with_flipped_signature(&es256(&claims("frank"))),
        ),
        (
            "expired ES256",
            es256(&with(claims("frank"), "exp", json!(now() - 120))),
        ),
    ] {
        let a = get(&gw, path, &[("authorization", &bearer(&token))]).await;
        assert_401(&a, Www::InvalidToken, what);
    }
}

/// `auth.jwt.roles_claim` and `auth.jwt.max_token_bytes` are honoured.
#[actix_rt::test]
async fn jwt_roles_claim_and_size_limit_are_configurable() {
    let echo = echo();
    let settings = "    roles_claim: groups\n    max_token_bytes: 2048\n";
    let gw = gateway(&services(&echo, None), &routes(""), &auth(settings, "")).await;

    let admin_by_groups = rs256(&with(claims("gina"), "groups", json!(["admin"])));
    let a = get(
        &gw,
        "/admin-area/x",
        &[("authorization", &bearer(&admin_by_groups))],
    )
    .await;
    assert_proxied(&a, "/users/admin-area/x", "roles from the configured claim");
    assert_eq!(upstream_roles(&a), ["admin"], "{}", a.text);

    let admin_by_roles = rs256(&with(claims("gina"), "roles", json!(["admin"])));
    let a = get(
        &gw,
        "/admin-area/x",
        &[("authorization", &bearer(&admin_by_roles))],
    )
    .await;
    assert_403(&a, "`roles` is not the configured roles claim");

    let small = rs256(&with(claims("gina"), "pad", json!("x".repeat(1000))));
    let large = rs256(&with(claims("gina"), "pad", json!("x".repeat(2000))));
    assert!(
        small.len() < 2048 && large.len() > 2048,
        "{} {}",
        small.len(),
        large.len()
    );
    let a = get(
        &gw,
        "/api/v1/users/1",
        &[("authorization", &bearer(&small))],
    )
    .await;
    assert_proxied(&a, "/users/api/v1/users/1", "a token under max_token_bytes");
    let a = get(
        &gw,
        "/api/v1/users/1",
        &[("authorization", &bearer(&large))],
    )
    .await;
    assert_401(&a, Www::InvalidToken, "a token over max_token_bytes: 2048");
}

// ----------------------------------------------------------------- roles ----

/// `roles: [admin]` lets in only identities holding `admin` — from the `roles`
/// claim (array or space-separated string), from `scope` when there is no `roles`
/// claim, or from an API key's client — and answers 403 `forbidden` otherwise; a
/// bad token is still 401, not 403.
#[actix_rt::test]
async fn roles_gate_routes_with_403() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let path = "/admin-area/reports";
    let call = |token: String| {
        let gw = &gw;
        async move { get(gw, path, &[("authorization", &bearer(&token))]).await }
    };

    for (what, c) in [
        (
            "roles [admin]",
            with(claims("ann"), "roles", json!(["admin"])),
        ),
        (
            "roles [user, admin]",
            with(claims("ann"), "roles", json!(["user", "admin"])),
        ),
        (
            "roles as a space-separated string",
            with(claims("ann"), "roles", json!("user admin")),
        ),
        (
            "scope as the fallback",
            with(claims("ann"), "scope", json!("read admin")),
        ),
    ] {
        let a = call(rs256(&c)).await;
        assert_proxied(&a, "/users/admin-area/reports", what);
        assert_eq!(a.body["headers"]["x-user-id"], "ann", "{what}: {}", a.text);
        assert!(
            upstream_roles(&a).contains(&"admin".to_owned()),
            "{what}: X-User-Roles {:?}",
            a.body["headers"]["x-user-roles"]
        );
    }
    let a = call(rs256(&with(
        claims("ann"),
        "roles",
        json!(["user", "admin"]),
    )))
    .await;
    assert_eq!(upstream_roles(&a), ["user", "admin"], "{}", a.text);

    let before = upstream_hits(&echo).await;
    for (what, c) in [
        ("roles [user]", with(claims("bo"), "roles", json!(["user"]))),
        ("no roles at all", claims("bo")),
        (
            "roles [user] with admin only in scope (scope is only a fallback)",
            with(
                with(claims("bo"), "roles", json!(["user"])),
                "scope",
                json!("admin"),
            ),
        ),
        (
            "a role that only contains the word",
            with(claims("bo"), "roles", json!(["administrator"])),
        ),
    ] {
        assert_403(&call(rs256(&c)).await, what);
    }
    let a = call(with_flipped_signature(&rs256(&with(
        claims("bo"),
        "roles",
        json!(["admin"]),
    ))))
    .await;
    assert_401(
        &a,
        Www::InvalidToken,
        "a forged admin token is 401, not 403",
    );

    // API keys carry their client's roles.
    let (admin_client, _) = new_client(&gw, "ops", &["admin"], &[]).await;
    let (viewer_client, _) = new_client(&gw, "viewer", &["viewer"], &[]).await;
    let (_, admin_key) = new_key(&gw, &admin_client).await;
    let (_, viewer_key) = new_key(&gw, &viewer_client).await;
    let a = wait_status(&gw, "/staff/x", &[("x-api-key", &admin_key)], 200).await;
    assert_eq!(a.body["path"], "/users/staff/x");
    assert_eq!(upstream_roles(&a), ["admin"], "{}", a.text);
    // The viewer's key is known (it opens a route without roles) but lacks the role.
    wait_status(&gw, "/keyed/x", &[("x-api-key", &viewer_key)], 200).await;
    let a = get(&gw, "/staff/x", &[("x-api-key", &viewer_key)]).await;
    assert_403(&a, "an API key whose client lacks the role");
    // Only the two successful key checks above reached the upstream.
    assert_eq!(
        upstream_hits(&echo).await,
        before + 2,
        "a refused request reached the upstream"
    );
}

// ---------------------------------------------------- auth: any / api_key ----

/// `any` takes a JWT or an API key, but a credential that is presented must be
/// valid: one bad one is 401 even beside a good one. `jwt` routes refuse API keys
/// and `api_key` routes refuse JWTs.
#[actix_rt::test]
async fn any_accepts_either_credential_but_refuses_a_bad_one_beside_a_good_one() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let (client_id, _) = new_client(&gw, "mixed", &["reader"], &[]).await;
    let (_, key) = new_key(&gw, &client_id).await;
    let token = bearer(&rs256(&claims("alice")));
    let bad_token = bearer(&with_flipped_signature(&rs256(&claims("alice"))));
    let bad_key = format!("{key}x");

    let a = wait_status(&gw, "/either/1", &[("x-api-key", &key)], 200).await;
    assert_eq!(
        a.body["headers"]["x-user-id"],
        client_id.as_str(),
        "{}",
        a.text
    );
    let a = get(&gw, "/either/1", &[("authorization", &token)]).await;
    assert_proxied(&a, "/users/either/1", "a JWT on an `any` route");
    assert_eq!(a.body["headers"]["x-user-id"], "alice");

    let before = upstream_hits(&echo).await;
    let a = get(&gw, "/either/1", &[]).await;
    assert_401(&a, Www::Plain, "no credential on an `any` route");
    let a = get(
        &gw,
        "/either/1",
        &[("authorization", &token), ("x-api-key", &bad_key)],
    )
    .await;
    assert_401(&a, Www::Bearer, "a good JWT beside a bad API key");
    let a = get(
        &gw,
        "/either/1",
        &[("authorization", &bad_token), ("x-api-key", &key)],
    )
    .await;
    assert_401(&a, Www::InvalidToken, "a bad JWT beside a good API key");
    let a = get(&gw, "/either/1", &[("x-api-key", &bad_key)]).await;
    assert_401(&a, Www::Bearer, "an unknown API key");
    let a = get(&gw, "/api/v1/users/1", &[("x-api-key", &key)]).await;
    assert_401(&a, Www::Bearer, "an API key on a `jwt` route");
    let a = get(&gw, "/keyed/1", &[("authorization", &token)]).await;
    assert_401(&a, Www::Bearer, "a JWT on an `api_key` route");
    assert_eq!(
        upstream_hits(&echo).await,
        before,
        "a refused request reached the upstream"
    );
}

/// An API key authenticates as its client (`X-User-ID` = `X-Client-ID` = the client
/// id, `X-User-Roles` = its roles) until it is revoked, and a client's deletion
/// takes its other keys with it.
#[actix_rt::test]
async fn api_keys_work_until_revoked_or_their_client_is_deleted() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let (client_id, _) = new_client(&gw, "billing", &["reader", "writer"], &[]).await;
    let (key_id, key) = new_key(&gw, &client_id).await;

    let a = wait_status(&gw, "/keyed/invoices", &[("x-api-key", &key)], 200).await;
    assert_eq!(a.body["path"], "/users/keyed/invoices");
    let h = &a.body["headers"];
    assert_eq!(h["x-user-id"], client_id.as_str(), "{}", a.text);
    assert_eq!(h["x-client-id"], client_id.as_str(), "{}", a.text);
    assert_eq!(upstream_roles(&a), ["reader", "writer"], "{}", a.text);

    let r = admin(&gw, "DELETE", &format!("/admin/keys/{key_id}"), None).await;
    assert_eq!(r.status, 200, "revoke: {r:?}");
    let a = wait_status(&gw, "/keyed/invoices", &[("x-api-key", &key)], 401).await;
    assert_401(&a, Www::Bearer, "a revoked key");

    let (_, second) = new_key(&gw, &client_id).await;
    wait_status(&gw, "/keyed/invoices", &[("x-api-key", &second)], 200).await;
    let r = admin(&gw, "DELETE", &format!("/admin/clients/{client_id}"), None).await;
    assert_eq!(r.status, 200, "delete client: {r:?}");
    let a = wait_status(&gw, "/keyed/invoices", &[("x-api-key", &second)], 401).await;
    assert_401(&a, Www::Bearer, "a key of a deleted client");
}

// ------------------------------------------------------ identity headers ----

/// Every spelling of the identity headers a client could send — case, `_` for `-`,
/// mixed — that an upstream framework could read as `X-User-ID`, `X-User-Roles` or
/// `X-Client-ID`. Each value says it is spoofed.
const SPOOFED: &[(&str, &str)] = &[
    ("X-User-ID", "spoof-uid-1"),
    ("x-user-id", "spoof-uid-2"),
    ("X_User_ID", "spoof-uid-3"),
    ("x_user_id", "spoof-uid-4"),
    ("X-USER_ID", "spoof-uid-5"),
    ("X_USER-ID", "spoof-uid-6"),
    ("x-User_Id", "spoof-uid-7"),
    ("X-User-Roles", "spoof-admin-1"),
    ("x_user_roles", "spoof-admin-2"),
    ("X_USER_ROLES", "spoof-admin-3"),
    ("X-User_Roles", "spoof-admin-4"),
    ("X-Client-ID", "spoof-cid-1"),
    ("X-Client_ID", "spoof-cid-2"),
    ("x_client_id", "spoof-cid-3"),
    ("X_CLIENT-ID", "spoof-cid-4"),
];

/// The identity header lines the recorder received, names folded the way a
/// CGI-style upstream folds them (case-insensitive, `_` = `-`).
fn identity_lines(recorded: &Value) -> BTreeMap<&'static str, Vec<String>> {
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for line in recorded["headers"].as_array().into_iter().flatten() {
        let name = line[0].as_str().unwrap_or_default();
        let value = line[1].as_str().unwrap_or_default().to_owned();
        let folded = name.to_ascii_lowercase().replace('_', "-");
        for known in ["x-user-id", "x-user-roles", "x-client-id"] {
            if folded == known {
                out.entry(known).or_default().push(value.clone());
            }
        }
    }
    out
}

fn assert_no_spoof_arrived(a: &RawAnswer, what: &str) {
    assert_eq!(a.status, 200, "{what}: {} {}", a.status, a.text);
    for line in a.body["headers"].as_array().into_iter().flatten() {
        assert!(
            !line[1].as_str().unwrap_or_default().contains("spoof"),
            "{what}: a client-sent identity header reached the upstream: {line}"
        );
    }
}

/// Client-sent identity headers never reach the upstream, in any spelling: not on
/// an `auth: none` route (the upstream sees none at all), and not on authenticated
/// ones, where it sees exactly one copy of each, the gateway's.
#[actix_rt::test]
async fn spoofed_identity_headers_never_reach_the_upstream_in_any_spelling() {
    let echo = echo();
    let recorder = Recorder::start();
    let extra = "  - { path: /open/*, service: raw, auth: none }
  - { path: /guarded/*, service: raw, auth: jwt }
  - { path: /guarded-key/*, service: raw, auth: api_key }
";
    let gw = gateway(
        &services(&echo, Some(&recorder)),
        &routes(extra),
        &auth("", ""),
    )
    .await;

    let a = raw_get(&gw, "/open/page", SPOOFED);
    assert_no_spoof_arrived(&a, "auth: none");
    let ids = identity_lines(&a.body);
    assert!(
        ids.is_empty(),
        "auth: none: identity headers reached the upstream: {ids:?}"
    );

    let token = bearer(&rs256(&with(
        claims("alice"),
        "roles",
        json!(["admin", "editor"]),
    )));
    let mut headers: Vec<(&str, &str)> = SPOOFED.to_vec();
    headers.push(("Authorization", token.as_str()));
    let a = raw_get(&gw, "/guarded/page", &headers);
    assert_no_spoof_arrived(&a, "auth: jwt");
    let ids = identity_lines(&a.body);
    assert_eq!(
        ids.get("x-user-id"),
        Some(&vec!["alice".to_owned()]),
        "{ids:?}"
    );
    assert_eq!(
        ids.get("x-user-roles"),
        Some(&vec!["admin,editor".to_owned()]),
        "{ids:?}"
    );
    assert_eq!(ids.get("x-client-id"), None, "a JWT has no client: {ids:?}");

    let (client_id, _) = new_client(&gw, "keyed", &["reader"], &[]).await;
    let (_, key) = new_key(&gw, &client_id).await;
    wait_status(&gw, "/keyed/x", &[("x-api-key", &key)], 200).await;
    let mut headers: Vec<(&str, &str)> = SPOOFED.to_vec();
    headers.push(("X-API-Key", key.as_str()));
    let a = raw_get(&gw, "/guarded-key/page", &headers);
    assert_no_spoof_arrived(&a, "auth: api_key");
    let ids = identity_lines(&a.body);
    let one = |v: &str| Some(vec![v.to_owned()]);
    assert_eq!(ids.get("x-user-id").cloned(), one(&client_id), "{ids:?}");
    assert_eq!(ids.get("x-client-id").cloned(), one(&client_id), "{ids:?}");
    assert_eq!(ids.get("x-user-roles").cloned(), one("reader"), "{ids:?}");
}

/// `Authorization` and `X-API-Key` stop at the gateway by default.
#[actix_rt::test]
async fn credentials_are_not_forwarded_by_default() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let (client_id, _) = new_client(&gw, "quiet", &[], &[]).await;
    let (_, key) = new_key(&gw, &client_id).await;
    let token = bearer(&rs256(&claims("alice")));

    let a = get(&gw, "/api/v1/users/1", &[("authorization", &token)]).await;
    assert_proxied(&a, "/users/api/v1/users/1", "jwt route");
    assert!(
        a.body["headers"].get("authorization").is_none(),
        "Authorization reached the upstream: {}",
        a.text
    );
    let a = wait_status(&gw, "/keyed/1", &[("x-api-key", &key)], 200).await;
    assert!(
        a.body["headers"].get("x-api-key").is_none(),
        "X-API-Key reached the upstream: {}",
        a.text
    );
    for (what, header) in [
        ("authorization", token.as_str()),
        ("x-api-key", key.as_str()),
    ] {
        let a = get(&gw, "/either/1", &[(what, header)]).await;
        assert_proxied(&a, "/users/either/1", what);
        assert!(
            a.body["headers"].get(what).is_none(),
            "{what} reached the upstream of an `any` route: {}",
            a.text
        );
    }
}

/// A route with `forward_credentials: true` passes them on unchanged.
#[actix_rt::test]
async fn forward_credentials_true_passes_them_on() {
    let echo = echo();
    let extra = "  - { path: /fwd-jwt/*, service: users, auth: jwt, forward_credentials: true }
  - { path: /fwd-key/*, service: users, auth: api_key, forward_credentials: true }
";
    let gw = gateway(&services(&echo, None), &routes(extra), &auth("", "")).await;
    let (client_id, _) = new_client(&gw, "loud", &[], &[]).await;
    let (_, key) = new_key(&gw, &client_id).await;
    let token = bearer(&rs256(&claims("alice")));

    let a = get(&gw, "/fwd-jwt/1", &[("authorization", &token)]).await;
    assert_proxied(&a, "/users/fwd-jwt/1", "forward_credentials jwt route");
    assert_eq!(
        a.body["headers"]["authorization"],
        token.as_str(),
        "{}",
        a.text
    );
    let a = wait_status(&gw, "/fwd-key/1", &[("x-api-key", &key)], 200).await;
    assert_eq!(a.body["headers"]["x-api-key"], key.as_str(), "{}", a.text);
    // The other routes still hold them back.
    let a = get(&gw, "/api/v1/users/1", &[("authorization", &token)]).await;
    assert!(
        a.body["headers"].get("authorization").is_none(),
        "{}",
        a.text
    );
}

// ------------------------------------------------------------------ paths ----

/// Dot segments and encoded dots are resolved before routing, and the upstream
/// receives the resolved path: `/static/../api/v1/users/1` (every spelling) is the
/// protected `/api/v1/users/1` — 401 without a credential, never forwarded — and
/// `/api/v1/users/..` is `/api/v1`, which no route serves.
#[actix_rt::test]
async fn dot_segments_and_encoded_dots_route_by_the_normalised_path() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;

    let before = upstream_hits(&echo).await;
    for target in [
        "/static/../api/v1/users/1",
        "/static/%2e%2e/api/v1/users/1",
        "/static/%2E%2E/api/v1/users/1",
        "/static/.%2e/api/v1/users/1",
        "/static/%2e./api/v1/users/1",
        "/static/./../api/v1/users/1",
        "/static/a/b/../../../api/v1/users/1",
    ] {
        let a = raw_get(&gw, target, &[]);
        assert_unauthorized(
            a.status,
            &a.body,
            a.header("www-authenticate"),
            Www::Plain,
            &format!("GET {target} without a credential"),
        );
    }
    // Climbing above the root: RFC 3986 stops at `/` (then it is the protected
    // route, 401); refusing the path outright (400) is as good.
    for target in ["/static/%2e%2e/%2e%2e/api/v1/users/1", "/../api/v1/users/1"] {
        let a = raw_get(&gw, target, &[]);
        if a.status != 400 {
            assert_unauthorized(
                a.status,
                &a.body,
                a.header("www-authenticate"),
                Www::Plain,
                &format!("GET {target} without a credential"),
            );
        }
    }
    for target in [
        "/api/v1/users/..",
        "/api/v1/users/%2e%2e",
        "/api/v1/users/%2E.",
        "/static/..",
    ] {
        let a = raw_get(&gw, target, &[]);
        assert_eq!(a.status, 404, "GET {target}: {} {}", a.status, a.text);
        assert_eq!(a.body["error"], "not_found", "GET {target}: {}", a.text);
    }
    assert_eq!(
        upstream_hits(&echo).await,
        before,
        "a dot-segment path reached the upstream"
    );

    // With a credential they reach the protected route, by its resolved path.
    let token = bearer(&rs256(&claims("alice")));
    for target in ["/static/../api/v1/users/1", "/static/%2e%2e/api/v1/users/1"] {
        let a = raw_get(&gw, target, &[("Authorization", &token)]);
        assert_eq!(a.status, 200, "GET {target} with a token: {}", a.text);
        assert_eq!(
            a.body["path"], "/users/api/v1/users/1",
            "GET {target}: {}",
            a.text
        );
        assert_eq!(a.body["headers"]["x-user-id"], "alice", "GET {target}");
    }
    let a = raw_get(&gw, "/api/v1/users/..", &[("Authorization", &token)]);
    assert_eq!(
        a.status, 404,
        "GET /api/v1/users/.. with a token: {}",
        a.text
    );

    // Public paths stay public, forwarded resolved.
    for (target, upstream) in [
        ("/static/./css/../app.js", "/public/static/app.js"),
        ("/static/a/%2e/b", "/public/static/a/b"),
        ("/static/../static/x", "/public/static/x"),
    ] {
        let a = raw_get(&gw, target, &[]);
        assert_eq!(a.status, 200, "GET {target}: {}", a.text);
        assert_eq!(a.body["path"], upstream, "GET {target}: {}", a.text);
    }
    let a = raw_get(&gw, "/static/./x?a=1&b=..", &[]);
    assert_eq!(
        (a.body["path"].as_str(), a.body["query"].as_str()),
        (Some("/public/static/x"), Some("a=1&b=..")),
        "the query is kept as sent: {}",
        a.text
    );
}

/// `%2F` and `%5C` (either case) in a path are 400 `bad_request` and never
/// forwarded, `/static/..%2Fapi/...` included.
#[actix_rt::test]
async fn encoded_slashes_are_refused_with_400() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let before = upstream_hits(&echo).await;
    for target in [
        "/static/a%2Fb",
        "/static/a%2fb",
        "/static/a%5Cb",
        "/static/a%5cb",
        "/static/..%2Fapi/v1/users/1",
        "/static/..%5Capi/v1/users/1",
        "/static/%2e%2e%2Fapi/v1/users/1",
    ] {
        let a = raw_get(&gw, target, &[]);
        assert_eq!(a.status, 400, "GET {target}: {} {}", a.status, a.text);
        assert_eq!(a.body["error"], "bad_request", "GET {target}: {}", a.text);
        assert!(
            a.body["request_id"].as_str().is_some(),
            "GET {target}: {}",
            a.text
        );
    }
    assert_eq!(
        upstream_hits(&echo).await,
        before,
        "an encoded-slash path reached the upstream"
    );
}

/// A route with `allow_encoded_slashes: true` takes `%2F` and forwards it still
/// encoded; the others keep refusing it.
#[actix_rt::test]
async fn allow_encoded_slashes_opts_a_route_out() {
    let echo = echo();
    let extra =
        "  - { path: /objects/*, service: public, auth: none, allow_encoded_slashes: true }\n";
    let gw = gateway(&services(&echo, None), &routes(extra), &auth("", "")).await;

    let a = raw_get(&gw, "/objects/bucket/a%2Fb.txt", &[]);
    assert_eq!(a.status, 200, "{}", a.text);
    let path = a.body["path"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert_eq!(path, "/public/objects/bucket/a%2fb.txt", "{}", a.text);
    let a = raw_get(&gw, "/static/a%2Fb", &[]);
    assert_eq!(a.status, 400, "other routes still refuse: {}", a.text);
}

// ----------------------------------------------------------------- OAuth ----

/// The client-credentials flow on one node: Basic and form client
/// authentication, scope narrowing, RFC 6749 §5.2 errors, `no-store`, an ES256 JWT
/// that the published JWKS verifies, and that token working on a protected route
/// as its client.
#[actix_rt::test]
async fn oauth_client_credentials_on_one_node() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let (client_id, secret) = new_client(
        &gw,
        "orders-app",
        &["orders"],
        &["orders:read", "orders:write"],
    )
    .await;
    let grant = [("grant_type", "client_credentials")];

    wait_client_ready(&gw, &client_id).await;

    // HTTP Basic.
    let a = token_request(&gw, Some((client_id.as_str(), secret.as_str())), &grant).await;
    assert_eq!(a.status, 200, "Basic client authentication: {}", a.text);
    assert!(
        a.header("cache-control")
            .is_some_and(|v| v.contains("no-store")),
        "Cache-Control: {:?}",
        a.header("cache-control")
    );
    assert_eq!(a.body["token_type"], "Bearer", "{}", a.text);
    let expires_in = a.body["expires_in"].as_i64().unwrap_or(-1);
    assert!(
        (3590..=3600).contains(&expires_in),
        "expires_in for the default 1h ttl: {}",
        a.text
    );
    let basic_token = a.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();

    // Form fields, narrowed scope.
    let a = token_request(
        &gw,
        None,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
            ("scope", "orders:read"),
        ],
    )
    .await;
    assert_eq!(a.status, 200, "form client authentication: {}", a.text);
    assert!(a
        .header("cache-control")
        .is_some_and(|v| v.contains("no-store")));
    let token = a.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    if let Some(scope) = a.body.get("scope") {
        assert_eq!(scope, "orders:read", "{}", a.text);
    }

    // What the token says, checked against the published keys.
    let (header, payload) = decode_parts(&token);
    assert_eq!(header["alg"], "ES256", "{header}");
    let kid = header["kid"]
        .as_str()
        .expect("kid in the token header")
        .to_owned();
    let jwks = get(&gw, "/.well-known/jwks.json", &[]).await;
    assert_eq!(jwks.status, 200, "{}", jwks.text);
    let jwk = jwks.body["keys"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["kid"] == kid.as_str()))
        .unwrap_or_else(|| panic!("kid {kid} not in the JWKS: {}", jwks.text))
        .clone();
    for (field, want) in [
        ("kty", "EC"),
        ("crv", "P-256"),
        ("alg", "ES256"),
        ("use", "sig"),
    ] {
        assert_eq!(jwk[field], want, "JWKS key {field}: {jwk}");
    }
    assert!(
        jwk.get("d").is_none(),
        "the JWKS publishes a private key: {jwk}"
    );
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(jwks.body.clone()).expect("a JWK set");
    let key = jsonwebtoken::DecodingKey::from_jwk(set.find(&kid).expect("kid in the set"))
        .expect("decoding key from the JWK");
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_issuer(&[CLUSTER_ISSUER]);
    validation.validate_aud = false;
    let verified = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap_or_else(|e| panic!("the JWKS does not verify the issued token: {e}: {payload}"));
    let c = verified.claims;
    assert_eq!(c["sub"], client_id.as_str(), "{c}");
    assert_eq!(c["client_id"], client_id.as_str(), "{c}");
    assert_eq!(c["iss"], CLUSTER_ISSUER, "{c}");
    assert_eq!(c["scope"], "orders:read", "{c}");
    let roles = match &c["roles"] {
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Value::String(s) => s.split(' ').map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    assert_eq!(roles, ["orders"], "{c}");
    let exp = c["exp"].as_i64().expect("exp");
    assert!(
        (exp - (now() + 3600)).abs() < 120,
        "exp {exp} is not about 1h ahead"
    );
    let jti = c["jti"].as_str().expect("jti");
    assert!(!jti.is_empty());
    assert_ne!(
        decode_parts(&basic_token).1["jti"],
        c["jti"],
        "two tokens share a jti"
    );

    // The token opens a protected route as its client.
    for t in [&token, &basic_token] {
        let a = get(&gw, "/orders/42", &[("authorization", &bearer(t))]).await;
        assert_proxied(&a, "/users/orders/42", "an issued token");
        let h = &a.body["headers"];
        assert_eq!(h["x-user-id"], client_id.as_str(), "{}", a.text);
        assert_eq!(h["x-client-id"], client_id.as_str(), "{}", a.text);
        assert_eq!(upstream_roles(&a), ["orders"], "{}", a.text);
    }
    let a = get(&gw, "/orders/42", &[]).await;
    assert_401(&a, Www::Plain, "no token");

    // Errors (RFC 6749 §5.2).
    let basic = Some((client_id.as_str(), secret.as_str()));
    let wrong = Some((client_id.as_str(), "cs_wrong"));
    token_error(
        &gw,
        "a wrong secret (Basic)",
        wrong,
        &grant,
        401,
        "invalid_client",
    )
    .await;
    let unknown = [
        ("grant_type", "client_credentials"),
        ("client_id", "no-such-client"),
        ("client_secret", "whatever"),
    ];
    token_error(
        &gw,
        "an unknown client (form)",
        None,
        &unknown,
        401,
        "invalid_client",
    )
    .await;
    let password = [("grant_type", "password")];
    let unsupported = "unsupported_grant_type";
    token_error(
        &gw,
        "grant_type=password",
        basic,
        &password,
        400,
        unsupported,
    )
    .await;
    let no_grant = [("scope", "orders:read")];
    token_error(
        &gw,
        "no grant_type",
        basic,
        &no_grant,
        400,
        "invalid_request",
    )
    .await;
    let too_wide = [
        ("grant_type", "client_credentials"),
        ("scope", "orders:read admin"),
    ];
    let what = "a scope the client does not have";
    token_error(&gw, what, basic, &too_wide, 400, "invalid_scope").await;
}

/// A token request that must fail with `status` and RFC 6749 §5.2 `error`.
async fn token_error(
    gw: &Gateway,
    what: &str,
    basic: Option<(&str, &str)>,
    form: &[(&str, &str)],
    status: u16,
    error: &str,
) {
    let a = token_request(gw, basic, form).await;
    assert_eq!(a.status, status, "{what}: {} {}", a.status, a.text);
    assert_eq!(a.body["error"], error, "{what}: {}", a.text);
}

/// The token endpoint admits `token_endpoint_limit` requests per client (10 per
/// hour here: the rate limiter's windows are aligned to the epoch, and with a
/// minute's window a run crossing a minute boundary could see an 11th admitted):
/// the 11th is 429 with `Retry-After`, and another client is unaffected.
#[actix_rt::test]
async fn the_token_endpoint_limits_each_client() {
    let echo = echo();
    let auth = format!(
        "{}  oauth:\n    token_endpoint_limit: 10/hour\n",
        auth("", "")
    );
    let gw = gateway(&services(&echo, None), &routes(""), &auth).await;
    let (busy, busy_secret) = new_client(&gw, "busy", &[], &[]).await;
    let (calm, calm_secret) = new_client(&gw, "calm", &[], &[]).await;
    let grant = [("grant_type", "client_credentials")];
    // Both clients are on the data plane before counting starts (a request
    // answered 401 for a client not yet applied would not be one of its 10).
    wait_client_ready(&gw, &busy).await;
    wait_client_ready(&gw, &calm).await;

    for n in 1..=10 {
        let a = token_request(&gw, Some((busy.as_str(), busy_secret.as_str())), &grant).await;
        assert_eq!(a.status, 200, "request {n} of 10: {}", a.text);
    }
    let a = token_request(&gw, Some((busy.as_str(), busy_secret.as_str())), &grant).await;
    assert_eq!(
        a.status, 429,
        "the 11th request in a minute: {} {}",
        a.status, a.text
    );
    let retry: u64 = a
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("429 without a numeric Retry-After: {:?}", a.headers));
    assert!((1..=3600).contains(&retry), "Retry-After {retry}");

    let a = token_request(&gw, Some((calm.as_str(), calm_secret.as_str())), &grant).await;
    assert_eq!(a.status, 200, "another client is not limited: {}", a.text);
    // Counted by the node's rate limiter (policy `oauth-token`, one key a client),
    // which the cluster accounting makes cluster-wide.
    let keys = gw.metric("gateway_rate_limit_keys").await.unwrap_or(0.0);
    assert!(keys >= 2.0, "gateway_rate_limit_keys = {keys}");
}

/// Waits until `client_id` has reached the data plane's credentials (a key of
/// its own opens an `api_key` route), without touching the token endpoint, whose
/// answers count towards its limits.
async fn wait_client_ready(gw: &Gateway, client_id: &str) {
    let (_, key) = new_key(gw, client_id).await;
    wait_status(gw, "/keyed/ready", &[("x-api-key", &key)], 200).await;
}

/// Failed client authentications from one address are limited: within 50 bad
/// secrets the endpoint answers 429 instead of 401.
#[actix_rt::test]
async fn failed_client_authentications_are_limited_per_address() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let (client_id, _) = new_client(&gw, "target", &[], &[]).await;
    wait_client_ready(&gw, &client_id).await;
    let grant = [("grant_type", "client_credentials")];
    let mut seen = Vec::new();
    for n in 1..=50 {
        let a = token_request(
            &gw,
            Some((client_id.as_str(), format!("cs_guess_{n}").as_str())),
            &grant,
        )
        .await;
        seen.push(a.status);
        match a.status {
            429 => {
                assert!(a.header("retry-after").is_some(), "429 without Retry-After");
                return;
            }
            401 => assert_eq!(a.body["error"], "invalid_client", "{}", a.text),
            other => panic!("bad secret #{n}: {other} {}", a.text),
        }
    }
    panic!("50 bad client secrets from one address, never a 429: {seen:?}");
}

// --------------------------------------------------------------- metrics ----

/// `gateway_auth_failures_total{route, reason}` read from a scrape (labels in any
/// order); 0 when absent.
fn auth_failures(text: &str, route: &str, reason: &str) -> f64 {
    text.lines()
        .filter_map(|l| l.strip_prefix("gateway_auth_failures_total{"))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(labels, _)| {
            let labels = labels.trim_end_matches('}');
            let has = |k: &str, v: &str| labels.split(',').any(|kv| kv == format!("{k}=\"{v}\""));
            has("route", route) && has("reason", reason)
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Each kind of refusal is counted under its route template and reason.
#[actix_rt::test]
async fn auth_failures_are_counted_by_route_and_reason() {
    let echo = echo();
    let gw = gateway(&services(&echo, None), &routes(""), &auth("", "")).await;
    let users = "/api/v1/users/1";
    let with_token = |t: String| bearer(&t);
    let cases = [
        ("missing", None),
        (
            "expired",
            Some(with_token(rs256(&with(
                claims("a"),
                "exp",
                json!(now() - 120),
            )))),
        ),
        (
            "not_yet_valid",
            Some(with_token(rs256(&with(
                claims("a"),
                "nbf",
                json!(now() + 120),
            )))),
        ),
        (
            "bad_signature",
            Some(with_token(with_flipped_signature(&rs256(&claims("a"))))),
        ),
        (
            "unknown_key",
            Some(with_token(sign(
                Algorithm::RS256,
                Some("rsa9"),
                &claims("a"),
                &rsa_key(&keys().rsa),
            ))),
        ),
        (
            "bad_claims",
            Some(with_token(rs256(&with(
                claims("a"),
                "iss",
                json!("https://evil.example"),
            )))),
        ),
        ("malformed", Some("Bearer not-a-jwt".to_owned())),
    ];
    for (reason, header) in &cases {
        let headers: Vec<(&str, &str)> = header
            .as_deref()
            .map(|h| vec![("authorization", h)])
            .unwrap_or_default();
        let a = get(&gw, users, &headers).await;
        assert_eq!(a.status, 401, "{reason}: {}", a.text);
    }
    let a = get(
        &gw,
        "/admin-area/x",
        &[("authorization", &bearer(&rs256(&claims("a"))))],
    )
    .await;
    assert_eq!(a.status, 403, "forbidden: {}", a.text);

    let (client_id, _) = new_client(&gw, "gone", &[], &[]).await;
    let (key_id, key) = new_key(&gw, &client_id).await;
    wait_status(&gw, "/keyed/x", &[("x-api-key", &key)], 200).await;
    let r = admin(&gw, "DELETE", &format!("/admin/keys/{key_id}"), None).await;
    assert_eq!(r.status, 200, "revoke: {r:?}");
    wait_status(&gw, "/keyed/x", &[("x-api-key", &key)], 401).await;

    let mut want: Vec<(&str, &str, f64)> = cases
        .iter()
        .map(|(reason, _)| ("/api/v1/users/:id", *reason, 1.0))
        .collect();
    want.push(("/admin-area/*", "forbidden", 1.0));
    want.push(("/api/v1/users/:id", "forbidden", 0.0));
    want.push(("/keyed/*", "missing", 0.0));
    wait_for_async(
        "gateway_auth_failures_total to count each refusal",
        Duration::from_secs(10),
        &gw,
        || async {
            let m = gw.metrics().await;
            let mut wrong = Vec::new();
            for (route, reason, n) in &want {
                let seen = auth_failures(m.text(), route, reason);
                if seen != *n {
                    wrong.push(format!("{route} {reason}: want {n}, saw {seen}"));
                }
            }
            // `revoked` counts at least the one refusal that ended the wait above.
            let revoked = auth_failures(m.text(), "/keyed/*", "revoked");
            if revoked < 1.0 {
                wrong.push(format!("/keyed/* revoked: want >= 1, saw {revoked}"));
            }
            if wrong.is_empty() {
                Ok(())
            } else {
                Err(Seen(wrong.join("; ")))
            }
        },
    )
    .await;
}
