//! The operators' view, checked against the real thing: the alert rules pass
//! `promtool check rules` and their unit tests (`promtool test rules`), and a real
//! Prometheus scraping a real three-node cluster under a little traffic (a 5xx
//! route, an open breaker, a 404) evaluates every expression of the Grafana
//! dashboard: each must parse, and the core panels must return data.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool` on `PATH`).
//! Without it these tests fail when `CI` is set and are skipped, loudly, otherwise.

mod support;

use serde_json::Value;
use sluice_testkit::{free_port, wait_for_async, Proc, Seen, TempDir};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{send, Cluster};

const ALL: [u64; 3] = [1, 2, 3];

/// The repository's `deploy/` directory.
fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// `name` on `PATH`; `None` (after a loud message) when it is missing outside CI,
/// a panic when it is missing in CI (`CI` set).
fn tool(name: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let msg = format!(
            "`{name}` is not on PATH: install Debian's `prometheus` package \
             (apt-get install -y prometheus) to run the monitoring tests"
        );
        if std::env::var_os("CI").is_some() {
            panic!("{msg}");
        }
        // Straight to stderr, past libtest's capture: a skip must be seen.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "\n!!!!! SKIPPED: {msg} !!!!!\n");
    }
    found
}

fn run(bin: &Path, args: &[&str], dir: &Path) {
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", bin.display()));
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n{}{}",
        bin.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let Some(promtool) = tool("promtool") else {
        return;
    };
    let dir = deploy().join("prometheus");
    run(&promtool, &["check", "rules", "sluice-alerts.yml"], &dir);
    run(
        &promtool,
        &["test", "rules", "sluice-alerts.test.yml"],
        &dir,
    );
    // Every alert has a runbook section, and the unit tests cover every alert.
    let rules = std::fs::read_to_string(dir.join("sluice-alerts.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("sluice-alerts.test.yml")).expect("tests");
    let runbook = std::fs::read_to_string(deploy().join("RUNBOOK.md")).expect("runbook");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert!(alerts.len() >= 8, "alerts: {alerts:?}");
    for alert in alerts {
        assert!(
            runbook.contains(&format!("\n## {alert}\n")),
            "RUNBOOK.md has no section for {alert}"
        );
        assert!(
            rules.contains(&format!("deploy/RUNBOOK.md#{}", alert.to_lowercase())),
            "{alert} has no runbook annotation"
        );
        assert!(
            tests.contains(&format!("alertname: {alert}\n")),
            "no unit test for {alert}"
        );
    }
}

/// The dashboard JSON.
fn dashboard() -> Value {
    let path = deploy().join("grafana/sluice-dashboard.json");
    let text = std::fs::read_to_string(&path).expect("read dashboard");
    serde_json::from_str(&text).expect("dashboard is JSON")
}

/// (panel title, expression) of every query of the dashboard.
fn expressions(d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_owned();
            out.push((title, t["expr"].as_str().expect("expr").to_owned()));
        }
    }
    out
}

/// What Grafana would send for the "All" selection and a 1 s scrape interval.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "30s")
        .replace("$__range", "5m")
        .replace("$node", ".*")
        .replace("$route", ".*")
        .replace("$service", ".*")
}

/// `label_values(selector, label)` as a PromQL query with the same answer.
fn label_values_query(q: &str) -> String {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not a label_values query: {q}"));
    let (selector, label) = inner.rsplit_once(',').expect("label_values(sel, label)");
    format!("count by ({}) ({})", label.trim(), selector.trim())
}

#[test]
fn dashboard_is_importable_and_uses_route_templates() {
    let d = dashboard();
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    assert_eq!(d["schemaVersion"], 39);
    assert_eq!(d["refresh"], "5s");
    let vars = d["templating"]["list"].as_array().expect("templating");
    let var = |n: &str| vars.iter().find(|v| v["name"] == n).cloned();
    let node = var("node").expect("node variable");
    assert_eq!(
        node["definition"],
        "label_values(gateway_requests_total, instance)"
    );
    let route = var("route").expect("route variable");
    assert_eq!(
        route["definition"],
        "label_values(gateway_requests_total{instance=~\"$node\"}, route)"
    );
    let mut ids = std::collections::BTreeSet::new();
    for p in d["panels"].as_array().expect("panels") {
        assert!(ids.insert(p["id"].as_u64().expect("id")), "duplicate id");
    }
    for (title, expr) in expressions(&d) {
        assert!(expr.contains("$node"), "{title}: no $node filter: {expr}");
        assert!(
            !expr.contains("route=\"") && !expr.contains("route=~\"/"),
            "{title}: a raw route in {expr}"
        );
        let by_route = expr.contains("gateway_requests_total")
            || expr.contains("gateway_request_duration_seconds")
            || expr.contains("gateway_overhead_seconds")
            || expr.contains("gateway_auth_failures_total")
            || expr.contains("gateway_rate_limit_violations_total");
        assert!(
            !by_route || expr.contains("route=~\"$route\""),
            "{title}: does not use the route template variable: {expr}"
        );
    }
}

/// Panels that must show data on a cluster with traffic (the rest must parse).
const CORE: &[&str] = &[
    "Requests/s by route",
    "Latency p50 / p95 / p99",
    "Error rate by route (5xx, 4xx)",
    "Top 10 routes by traffic",
    "Gateway overhead p99 by route",
    "Circuit breaker state per service",
    "Upstream target health",
    "Raft leader",
    "Quorum",
    "Raft term",
    "Applied index",
];

/// A running Prometheus, killed on drop.
struct Prometheus {
    proc: Proc,
    url: String,
    _dir: TempDir,
}

impl Prometheus {
    fn start(bin: &Path, targets: &[String]) -> Prometheus {
        let dir = TempDir::new("prometheus");
        let port = free_port();
        let rules = deploy().join("prometheus/sluice-alerts.yml");
        let config = format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\n\
             rule_files: [{rules:?}]\n\
             scrape_configs:\n  - job_name: sluice\n    static_configs:\n      - targets: [{}]\n",
            targets
                .iter()
                .map(|t| format!("{t:?}"))
                .collect::<Vec<_>>()
                .join(", "),
            rules = rules.display().to_string(),
        );
        let config_file = dir.path().join("prometheus.yml");
        std::fs::write(&config_file, config).expect("write prometheus.yml");
        let data = dir.path().join("data");
        let listen = format!("127.0.0.1:{port}");
        let proc = Proc::spawn(
            "prometheus",
            bin,
            &[
                &format!("--config.file={}", config_file.display()),
                &format!("--storage.tsdb.path={}", data.display()),
                &format!("--web.listen-address={listen}"),
                "--storage.tsdb.retention.time=1h",
            ],
            &dir.path().join("prometheus.log"),
        );
        proc.wait_listening(&[port], Duration::from_secs(60));
        Prometheus {
            proc,
            url: format!("http://{listen}"),
            _dir: dir,
        }
    }

    /// `GET /api/v1/query`: `Ok(result)` when the query parses and runs.
    async fn query(&self, client: &awc::Client, expr: &str) -> Result<Vec<Value>, String> {
        let q: String = url::form_urlencoded::byte_serialize(expr.as_bytes()).collect();
        let a = send(
            client.get(format!("{}/api/v1/query?query={q}", self.url)),
            None,
        )
        .await?;
        if a.status != 200 || a.body["status"] != "success" {
            return Err(format!("{} {}", a.status, a.text));
        }
        Ok(a.body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

/// A little traffic on every node: 200s, 404s, and 500s from `/status/*` (whose
/// service's breaker opens after 3 of them, then 503s).
async fn traffic(c: &Cluster) {
    for id in ALL {
        for path in ["/api/a", "/api/b", "/nope", "/status/500", "/status/500"] {
            let _ = c.data_get(id, path).await;
        }
    }
}

#[actix_rt::test]
async fn prometheus_scrapes_the_cluster_and_every_dashboard_query_works() {
    let Some(bin) = tool("prometheus") else {
        return;
    };
    let mut c = Cluster::configure("monitoring", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    c.wait_agreed_leader(&ALL, 30).await;
    c.wait_seeded(&ALL, 30).await;

    // A service whose breaker opens after three 5xx, behind a public route.
    let service = serde_json::json!({
        "upstreams": [c.upstream_url()],
        "circuit_breaker": { "consecutive_failures": 3, "open_for": "60s" },
    });
    let a = c
        .admin_put(1, "/admin/services/flaky", &service)
        .await
        .expect("PUT service");
    assert_eq!(a.status, 200, "PUT /admin/services/flaky: {a:?}");
    let route = serde_json::json!({ "path": "/status/*", "service": "flaky", "auth": "none" });
    let a = c
        .admin_put(1, "/admin/routes/status", &route)
        .await
        .expect("PUT route");
    assert_eq!(a.status, 200, "PUT /admin/routes/status: {a:?}");
    let version: u64 = a
        .header("x-sluice-version")
        .and_then(|v| v.parse().ok())
        .expect("X-Sluice-Version");
    c.wait_version(&ALL, version, 30).await;

    let targets: Vec<String> = ALL
        .iter()
        .map(|id| c.data_url(*id, "").trim_start_matches("http://").to_owned())
        .collect();
    let prom = Prometheus::start(&bin, &targets);
    let client = sluice_testkit::client(Duration::from_secs(10));
    let logs = || {
        format!(
            "{}\n--- prometheus ---\n{}",
            c.logs(),
            prom.proc.log_tail(30)
        )
    };

    // Every node scraped, with the new metrics.
    wait_for_async(
        "Prometheus to scrape all three nodes",
        Duration::from_secs(60),
        &logs,
        || async {
            traffic(&c).await;
            let up = prom
                .query(
                    &client,
                    "sum(up{job=\"sluice\"}) == 3 and sum(gateway_raft_quorum) == 3",
                )
                .await;
            match up {
                Ok(r) if !r.is_empty() => Ok(()),
                other => Err(Seen(format!("{other:?}"))),
            }
        },
    )
    .await;

    // The breaker of `flaky` is open somewhere, one leader, the 5xx route shows.
    for (what, expr) in [
        (
            "the flaky breaker open",
            "max(gateway_circuit_breaker_state{service=\"flaky\"}) >= 1",
        ),
        ("exactly one leader", "sum(gateway_raft_leader) == 1"),
        (
            "5xx on the /status/* route",
            "sum(rate(gateway_requests_total{route=\"/status/*\",status=~\"5..\"}[30s])) > 0",
        ),
        (
            "overhead observed",
            "sum(gateway_overhead_seconds_count{route=\"/api/*\"}) > 0",
        ),
    ] {
        wait_for_async(what, Duration::from_secs(60), &logs, || async {
            traffic(&c).await;
            match prom.query(&client, expr).await {
                Ok(r) if !r.is_empty() => Ok(()),
                other => Err(Seen(format!("{expr}: {other:?}"))),
            }
        })
        .await;
    }

    // Every dashboard expression parses; the core ones return data.
    let d = dashboard();
    let mut queries: Vec<(String, String, bool)> = expressions(&d)
        .into_iter()
        .map(|(title, expr)| {
            let core = CORE.contains(&title.as_str());
            (title, substitute(&expr), core)
        })
        .collect();
    for v in d["templating"]["list"].as_array().expect("templating") {
        let def = v["definition"].as_str().expect("definition");
        let name = format!("variable {}", v["name"]);
        queries.push((name, substitute(&label_values_query(def)), true));
    }
    for (title, expr, core) in &queries {
        wait_for_async(
            format!(
                "dashboard query of {title:?} to {}",
                if *core { "return data" } else { "parse" }
            ),
            Duration::from_secs(60),
            &logs,
            || async {
                traffic(&c).await;
                match prom.query(&client, expr).await {
                    Ok(r) if !*core || !r.is_empty() => Ok(()),
                    other => Err(Seen(format!("{expr}: {other:?}"))),
                }
            },
        )
        .await;
    }

    // The alert rules load and evaluate in the real thing too.
    wait_for_async(
        "Prometheus to evaluate the alert rules",
        Duration::from_secs(60),
        &logs,
        || async {
            let a = send(client.get(format!("{}/api/v1/rules", prom.url)), None).await;
            let rules: Vec<Value> = a
                .as_ref()
                .ok()
                .and_then(|a| a.body["data"]["groups"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
                .collect();
            let healthy = rules.iter().filter(|r| r["health"] == "ok").count();
            if rules.len() >= 8 && healthy == rules.len() {
                Ok(())
            } else {
                Err(Seen(format!("{} rules, {healthy} ok: {a:?}", rules.len())))
            }
        },
    )
    .await;
}

/// `gateway_raft_quorum` on node `id`, as its `/metrics` says.
async fn quorum_gauge(c: &Cluster, id: u64) -> Option<f64> {
    sluice_testkit::Metrics::scrape(&c.data_url(id, "/metrics"))
        .await
        .ok()?
        .sample("gateway_raft_quorum")
}

/// A leader whose followers stop answering still says it leads (openraft 0.9),
/// but its `gateway_raft_quorum` drops to 0 — with no Raft event to announce it —
/// and comes back to 1 when they return. Needs no Prometheus.
#[actix_rt::test]
async fn a_leader_cut_off_from_its_quorum_reports_no_quorum() {
    let mut c = Cluster::configure("quorum-gauge", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, _) = c.wait_agreed_leader(&ALL, 30).await;
    for id in ALL {
        wait_for_async(
            format!("node {id} to report a quorum"),
            Duration::from_secs(30),
            &c,
            || async { (quorum_gauge(&c, id).await == Some(1.0)).then_some(()) },
        )
        .await;
    }
    let followers: Vec<u64> = ALL.into_iter().filter(|id| *id != leader).collect();
    for id in &followers {
        c.pause(*id);
    }
    wait_for_async(
        format!("leader {leader} to report no quorum"),
        Duration::from_secs(30),
        &c,
        || async {
            let q = quorum_gauge(&c, leader).await;
            if q == Some(0.0) {
                Ok(())
            } else {
                Err(Seen(format!("gateway_raft_quorum = {q:?}")))
            }
        },
    )
    .await;
    let still_leader = sluice_testkit::Metrics::scrape(&c.data_url(leader, "/metrics"))
        .await
        .ok()
        .and_then(|m| m.sample("gateway_raft_leader"));
    assert_eq!(
        still_leader,
        Some(1.0),
        "the cut-off leader was expected to still report itself leader"
    );
    for id in &followers {
        c.resume(*id);
    }
    for id in ALL {
        wait_for_async(
            format!("node {id} to report a quorum again"),
            Duration::from_secs(30),
            &c,
            || async { (quorum_gauge(&c, id).await == Some(1.0)).then_some(()) },
        )
        .await;
    }
}
