//! Upstream actors from the outside: circuit breakers, active health checks and
//! their survival across reloads, against real `sluice` and echo processes.

mod support;

use awc::http::StatusCode;
use serde_json::Value;
use sluice_testkit::{free_port, wait_for_async, Echo, Signal};
use std::time::Duration;
use support::{echo, sluice, Gateway};

fn client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish()
}

async fn status(url: &str) -> (StatusCode, Value, Option<String>) {
    let mut r = client().get(url).send().await.expect("request");
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = r.body().await.unwrap_or_default();
    (
        r.status(),
        serde_json::from_slice(&body).unwrap_or(Value::Null),
        retry,
    )
}

async fn post(url: &str) -> StatusCode {
    client()
        .post(url)
        .send_body("x")
        .await
        .expect("post")
        .status()
}

async fn echo_requests(echo: &Echo) -> u64 {
    let (_, b, _) = status(&format!("{}/_control/stats", echo.url())).await;
    b["requests"].as_u64().expect("stats")
}

const BREAKER: &str = "gateway_circuit_breaker_state{service=\"svc\"}";

fn breaker_config(echo: &Echo, open_for: &str) -> String {
    format!(
        "services:
  svc:
    upstreams: [{}]
    circuit_breaker: {{ consecutive_failures: 3, min_requests: 100, open_for: {open_for}, close_after: 2 }}
routes:
  - {{ path: /api/*, service: svc, auth: none }}
",
        echo.url()
    )
}

async fn trip(gw: &Gateway, echo: &Echo) {
    assert_eq!(
        post(&format!("{}/_control/fail", echo.url())).await,
        StatusCode::OK
    );
    for _ in 0..3 {
        let (s, _, _) = status(&gw.url("/api/x")).await;
        assert_eq!(
            s,
            StatusCode::INTERNAL_SERVER_ERROR,
            "upstream failures pass through"
        );
    }
    // the actor decides asynchronously: wait for the published state (1 = open)
    gw.wait_metric(BREAKER, 1.0, 5).await;
}

#[actix_rt::test]
async fn breaker_opens_fails_fast_without_touching_the_upstream_and_recovers() {
    let echo = echo();
    let gw = Gateway::start(&[("svc.yaml", &breaker_config(&echo, "1s"))]);
    assert_eq!(status(&gw.url("/api/ok")).await.0, StatusCode::OK);
    trip(&gw, &echo).await;

    let before = echo_requests(&echo).await;
    let started = std::time::Instant::now();
    for _ in 0..20 {
        let (s, b, retry) = status(&gw.url("/api/x")).await;
        if s != StatusCode::SERVICE_UNAVAILABLE {
            break; // open_for (1 s) ran out on a slow machine: half-open probes
        }
        assert_eq!(b["error"], "circuit_open");
        assert!(retry.is_some_and(|r| r.parse::<u64>().is_ok_and(|n| n >= 1)));
    }
    let open_elapsed = started.elapsed();
    if open_elapsed < Duration::from_millis(900) {
        assert_eq!(
            echo_requests(&echo).await,
            before,
            "a request reached the upstream while open"
        );
    }

    // heal: after open_for the probes succeed and the breaker closes
    assert_eq!(
        post(&format!("{}/_control/heal", echo.url())).await,
        StatusCode::OK
    );
    let secs = Duration::from_secs;
    wait_for_async("traffic flowing again", secs(10), &gw, || async {
        let (s, b, _) = status(&gw.url("/api/x")).await;
        if s == StatusCode::OK {
            Ok(())
        } else {
            Err((s, b))
        }
    })
    .await;
    // close_after = 2: a second successful probe closes it (0 = closed)
    wait_for_async("breaker closed", secs(5), &gw, || async {
        status(&gw.url("/api/x")).await;
        let state = gw.metric(BREAKER).await;
        if state == Some(0.0) {
            Ok(())
        } else {
            Err(state)
        }
    })
    .await;
    let m = gw.metrics().await;
    let opened = m.sample("gateway_circuit_breaker_transitions_total{service=\"svc\",to=\"open\"}");
    let half =
        m.sample("gateway_circuit_breaker_transitions_total{service=\"svc\",to=\"half_open\"}");
    let closed =
        m.sample("gateway_circuit_breaker_transitions_total{service=\"svc\",to=\"closed\"}");
    assert!(
        opened >= Some(1.0) && half >= Some(1.0) && closed >= Some(1.0),
        "{opened:?} {half:?} {closed:?}"
    );
    let log = gw.proc.log_text();
    assert!(
        log.contains("3 consecutive failures"),
        "transition reason not logged: {log}"
    );
}

#[actix_rt::test]
async fn open_breaker_never_connects_and_survives_reload() {
    // open_for long enough that the whole check happens while open
    let echo = echo();
    let gw = Gateway::start(&[("svc.yaml", &breaker_config(&echo, "60s"))]);
    trip(&gw, &echo).await;
    let before = echo_requests(&echo).await;
    for _ in 0..50 {
        assert_eq!(
            status(&gw.url("/api/x")).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(
        echo_requests(&echo).await,
        before,
        "no request may reach the upstream while open"
    );

    // a reload that keeps the service (and one that changes only its timeout)
    // must not reset the open breaker
    let changed = breaker_config(&echo, "60s").replace("upstreams:", "timeout: 7s\n    upstreams:");
    gw.write(
        "svc.yaml",
        &format!("{changed}  - {{ path: /other, service: svc, auth: none }}\n"),
    );
    gw.proc.signal(Signal::Hup);
    gw.wait_metric("gateway_config_reloads_total{result=\"ok\"}", 1.0, 5)
        .await;
    assert_eq!(
        status(&gw.url("/other")).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let (s, b, _) = status(&gw.url("/api/x")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("circuit_open"))
    );
    assert_eq!(gw.metric(BREAKER).await, Some(1.0));
    assert_eq!(echo_requests(&echo).await, before);
}

#[actix_rt::test]
async fn health_checks_take_a_dead_target_out_and_bring_it_back() {
    let alive = echo();
    let dead_port = free_port();
    let dead = format!("http://127.0.0.1:{dead_port}");
    let gw = Gateway::start(&[(
        "svc.yaml",
        &format!(
            "services:
  svc:
    upstreams: [{}, {dead}]
    health_check: {{ path: /health, interval: 200ms, timeout: 150ms, healthy_after: 1, unhealthy_after: 2 }}
    circuit_breaker: {{ enabled: false }}
  gone:
    upstreams: [{dead}]
    health_check: {{ path: /health, interval: 200ms, timeout: 150ms, unhealthy_after: 2 }}
routes:
  - {{ path: /api/*, service: svc, auth: none }}
  - {{ path: /gone, service: gone, auth: none }}
",
            alive.url()
        ),
    )]);
    let gauge = format!("gateway_upstream_health{{service=\"svc\",target=\"{dead}\"}}");
    // dead target out of rotation
    gw.wait_metric(&gauge, 0.0, 10).await;

    // POST is never retried, so every 200 proves the dead target was not picked
    for _ in 0..20 {
        assert_eq!(post(&gw.url("/api/x")).await, StatusCode::OK);
    }
    let (s, b, _) = status(&gw.url("/ready")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let failing = b["failing"].to_string();
    assert!(
        failing.contains("service gone") && !failing.contains("service svc"),
        "{b}"
    );

    // the target comes back: it re-enters rotation and gets traffic again
    let back = Echo::start_on(&sluice(), dead_port);
    // target back in rotation
    gw.wait_metric(&gauge, 1.0, 10).await;
    for _ in 0..10 {
        assert_eq!(post(&gw.url("/api/x")).await, StatusCode::OK);
    }
    assert!(
        echo_requests(&back).await >= 3,
        "revived target got no traffic"
    );
}

/// An `https://` upstream whose certificate a private CA signed: trusted through
/// `node.upstream_ca_file`, spoken to in HTTP/2 (ALPN), bodies streamed both ways;
/// a node without that CA refuses the upstream (502), it does not skip the check.
/// A CA (`ca.pem`) and a certificate it signed for `localhost` (`upstream.pem`,
/// `upstream.key`), made by `scripts/tls-certs.sh` in `dir`/tls.
fn upstream_certs(dir: &sluice_testkit::TempDir) -> std::path::PathBuf {
    let certs = dir.join("tls");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tls-certs.sh");
    let made = std::process::Command::new(script)
        .arg(&certs)
        .arg("upstream")
        .output()
        .expect("scripts/tls-certs.sh (needs openssl)");
    assert!(made.status.success(), "{made:?}");
    certs
}

#[actix_rt::test]
async fn a_tls_upstream_is_verified_against_node_upstream_ca_file_and_spoken_to_in_h2() {
    let dir = sluice_testkit::TempDir::new("upstream-tls");
    let certs = upstream_certs(&dir);
    let upstream = Echo::start_tls(
        &sluice(),
        &certs.join("upstream.pem"),
        &certs.join("upstream.key"),
    );
    let config = format!(
        "services:
  secure:
    upstreams: [{}]
routes:
  - {{ path: /api/*, service: secure, auth: none }}
  - {{ path: /bytes/*, service: secure, auth: none }}
",
        upstream.url()
    );
    let gw = Gateway::start_with(
        &[("services.yaml", &config)],
        &format!(
            "  upstream_ca_file: {}\n  keepalive_timeout: 2s\n",
            certs.join("ca.pem").display()
        ),
    );

    let (s, b, _) = status(&gw.url("/api/hello?x=1")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["version"], "HTTP/2.0", "{b}");
    assert_eq!(
        (b["path"].as_str(), b["query"].as_str()),
        (Some("/api/hello"), Some("x=1"))
    );

    // 1 MiB up, 4 MiB down, through the TLS h2 connection.
    let up = vec![b'u'; 1 << 20];
    let mut r = client()
        .post(gw.url("/api/upload"))
        .send_body(up)
        .await
        .expect("post");
    assert_eq!(r.status(), StatusCode::OK);
    let b: Value = serde_json::from_slice(&r.body().await.expect("body")).expect("json");
    assert_eq!(
        (b["body_length"].as_u64(), b["version"].as_str()),
        (Some(1 << 20), Some("HTTP/2.0")),
        "{b}"
    );
    let mut r = client()
        .get(gw.url(&format!("/bytes/{}", 4 << 20)))
        .send()
        .await
        .expect("download");
    assert_eq!(r.status(), StatusCode::OK);
    let down = r.body().limit(8 << 20).await.expect("body");
    assert_eq!(down.len(), 4 << 20);

    // A kept-alive client connection is closed after `keepalive_timeout` once a
    // response streamed from the h2 upstream has gone out.
    let (head, idle) =
        support::idle_close_after(gw.port, b"GET /bytes/100000 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(idle < Duration::from_secs(10), "closed after {idle:?}");

    // Without the private CA the certificate is not trusted: 502.
    let untrusting = Gateway::start(&[("services.yaml", &config)]);
    let (s, b, _) = status(&untrusting.url("/api/hello")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{b}");
}

/// An HTTPS upstream that offers only HTTP/1.1 by ALPN (as most do: a Node,
/// Python or Java server behind TLS), on its own threads with rustls: for each
/// request it answers with its request line, the protocol ALPN agreed on and the
/// length of the body it read. Counts the TLS connections it accepted.
struct H1TlsUpstream {
    port: u16,
    connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl H1TlsUpstream {
    fn start(cert: &std::path::Path, key: &std::path::Path) -> H1TlsUpstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert");
        let key = PrivateKeyDer::from_pem_file(key).expect("key");
        let mut config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = std::sync::Arc::new(config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let connections = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = connections.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                count.fetch_add(1, Ordering::SeqCst);
                let conn = rustls::ServerConnection::new(config.clone()).expect("connection");
                std::thread::spawn(move || {
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    while let Some(head) = sluice_testkit::read_raw_head(&mut tls) {
                        let head = String::from_utf8_lossy(&head).into_owned();
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        let mut body = vec![0u8; length];
                        if tls.read_exact(&mut body).is_err() {
                            return;
                        }
                        let alpn = tls
                            .conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned());
                        let answer = serde_json::json!({
                            "request_line": head.lines().next().unwrap_or(""),
                            "alpn": alpn,
                            "body_length": length,
                        })
                        .to_string();
                        let out = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                             content-length: {}\r\n\r\n{answer}",
                            answer.len()
                        );
                        if tls
                            .write_all(out.as_bytes())
                            .and_then(|_| tls.flush())
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        H1TlsUpstream { port, connections }
    }
}

#[actix_rt::test]
async fn a_tls_upstream_offering_only_http1_is_spoken_to_in_http1_on_a_kept_connection() {
    let dir = sluice_testkit::TempDir::new("upstream-tls-h1");
    let certs = upstream_certs(&dir);
    let upstream = H1TlsUpstream::start(&certs.join("upstream.pem"), &certs.join("upstream.key"));
    let config = format!(
        "services:
  secure:
    upstreams: [https://localhost:{}]
routes:
  - {{ path: /api/*, service: secure, auth: none }}
",
        upstream.port
    );
    let gw = Gateway::start_with(
        &[("services.yaml", &config)],
        &format!("  upstream_ca_file: {}\n", certs.join("ca.pem").display()),
    );

    // One client connection, so one gateway worker and its pool of upstream
    // connections: a bodiless request, 1 MiB up, another bodiless one.
    let one = client();
    let mut r = one.get(gw.url("/api/hello?x=1")).send().await.expect("get");
    let body = r.body().await.expect("body");
    assert_eq!(r.status(), StatusCode::OK, "{body:?}");
    let b: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (b["request_line"].as_str(), b["alpn"].as_str()),
        (Some("GET /api/hello?x=1 HTTP/1.1"), Some("http/1.1")),
        "{b}"
    );
    let mut r = one
        .post(gw.url("/api/upload"))
        .send_body(vec![b'u'; 1 << 20])
        .await
        .expect("post");
    let body = r.body().await.expect("body");
    assert_eq!(r.status(), StatusCode::OK, "{body:?}");
    let b: Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        (b["request_line"].as_str(), b["body_length"].as_u64()),
        (Some("POST /api/upload HTTP/1.1"), Some(1 << 20)),
        "{b}"
    );
    let mut r = one.get(gw.url("/api/again")).send().await.expect("get");
    assert_eq!(r.status(), StatusCode::OK);
    let _ = r.body().await;
    assert_eq!(
        upstream
            .connections
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the TLS connection to the upstream is kept and used again"
    );
}
