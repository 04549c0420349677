//! The admin console in a real browser: a three-node cluster of real `sluice`
//! processes, and headless Chromium driven by Selenium
//! (`chaos-tests/console/console_test.py`) against one node's `/console`: a wrong
//! token shows an error; the right one shows three members and the leader; a
//! route's requests/s moves under traffic; logging out returns to the login form.
//!
//! Needs `python3` with `selenium`, Debian's `chromium` and `chromium-driver`
//! (`.ci/run` installs them). Without them the test fails when `CI` is set and is
//! skipped, loudly, otherwise. The screenshot lands in the test's temp dir and,
//! with `SLUICE_CONSOLE_SCREENSHOT=path`, at that path too (how `docs/console.png`
//! is made).

mod support;

use sluice_testkit::TempDir;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{send, Cluster, TOKEN};

const ALL: [u64; 3] = [1, 2, 3];
/// How long the browser script may take before it is killed.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(180);

/// What the browser test runs with.
struct Browser {
    python: String,
    chromium: PathBuf,
    chromedriver: PathBuf,
}

/// The first of `names` found on `PATH` (or in `extra` dirs).
fn find(names: &[&str], extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain(extra.iter().map(PathBuf::from))
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// The browser, driver and Selenium, or what is missing.
fn browser() -> Result<Browser, Vec<String>> {
    let mut missing = Vec::new();
    let python = std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".into());
    let selenium = Command::new(&python)
        .args(["-c", "import selenium"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !selenium {
        missing.push(format!(
            "{python} with selenium (python3 -m pip install selenium)"
        ));
    }
    let chromium = find(
        &["chromium", "chromium-browser", "google-chrome"],
        &["/usr/lib/chromium"],
    );
    if chromium.is_none() {
        missing.push("chromium (apt-get install chromium)".into());
    }
    let chromedriver = find(&["chromedriver"], &["/usr/lib/chromium"]);
    if chromedriver.is_none() {
        missing.push("chromedriver (apt-get install chromium-driver)".into());
    }
    match (chromium, chromedriver) {
        (Some(chromium), Some(chromedriver)) if missing.is_empty() => Ok(Browser {
            python,
            chromium,
            chromedriver,
        }),
        _ => Err(missing),
    }
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// Runs the Selenium script to its end (or kills it at the deadline); returns
/// whether it exited 0 and everything it printed.
fn run_script(b: &Browser, env: &[(&str, String)], out_dir: &Path) -> (bool, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("console/console_test.py");
    let log = out_dir.join("console_test.log");
    let file = std::fs::File::create(&log).expect("create console_test.log");
    let err = file.try_clone().expect("clone log handle");
    let mut cmd = Command::new(&b.python);
    cmd.arg(&script)
        .env("CHROMIUM", &b.chromium)
        .env("CHROMEDRIVER", &b.chromedriver)
        // Selenium must never try to download a driver or browser.
        .env("SE_OFFLINE", "true")
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start the console test script");
    let started = Instant::now();
    let ok = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if started.elapsed() > SCRIPT_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => panic!("waiting for the console test script: {e}"),
        }
    };
    let mut output = std::fs::read_to_string(&log).unwrap_or_default();
    if started.elapsed() > SCRIPT_DEADLINE {
        output.push_str(&format!("\n(killed after {SCRIPT_DEADLINE:?})"));
    }
    (ok, output)
}

/// Whether `html` has an attribute like `onclick=` (an inline event handler).
fn has_inline_handler(html: &str) -> bool {
    html.split(|c: char| c.is_whitespace()).any(|word| {
        word.strip_prefix("on").is_some_and(|rest| {
            let name: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        })
    })
}

/// The console page and `/admin/metrics` answer as promised, before any browser.
async fn check_http(c: &Cluster, node: u64) {
    let client = c.client();
    let page = send(client.get(c.admin_url(node, "/console")), None)
        .await
        .expect("GET /console");
    assert_eq!(page.status, 200, "GET /console: {page:?}");
    let csp = page.header("content-security-policy").unwrap_or_default();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "CSP lacks {directive:?}: {csp:?}");
    }
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    assert!(
        !page.text.contains("<script>") && !has_inline_handler(&page.text),
        "the page must have no inline script or inline event handler"
    );
    for asset in ["/console/app.js", "/console/app.css"] {
        let a = send(client.get(c.admin_url(node, asset)), None)
            .await
            .expect("GET console asset");
        assert_eq!(a.status, 200, "GET {asset}: {a:?}");
    }

    let refused = send(client.get(c.admin_url(node, "/admin/metrics")), None)
        .await
        .expect("GET /admin/metrics without a token");
    assert_eq!(refused.status, 401, "/admin/metrics without a token");
    let wrong = send(
        client
            .get(c.admin_url(node, "/admin/metrics"))
            .bearer_auth("not-the-token"),
        None,
    )
    .await
    .expect("GET /admin/metrics with a wrong token");
    assert_eq!(wrong.status, 401, "/admin/metrics with a wrong token");
    let metrics = c
        .admin_get(node, "/admin/metrics")
        .await
        .expect("GET /admin/metrics");
    assert_eq!(metrics.status, 200, "/admin/metrics: {metrics:?}");
    assert!(
        metrics.text.contains("gateway_raft_term"),
        "/admin/metrics is not the node's Prometheus text: {}",
        &metrics.text[..metrics.text.len().min(500)]
    );
}

#[actix_rt::test]
async fn console_logs_in_shows_the_cluster_and_live_traffic_then_logs_out() {
    let browser = match browser() {
        Ok(b) => b,
        Err(missing) if in_ci() => panic!(
            "the console browser test needs {} (CI is set: failing, not skipping)",
            missing.join(", ")
        ),
        Err(missing) => {
            // Straight to the process's stderr: libtest captures `eprintln!` of a
            // passing test, and a skip must not pass unnoticed.
            let _ = writeln!(
                std::io::stderr(),
                "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
                 !!! SKIPPED console browser test: missing {}\n\
                 !!! (install them as .ci/run does; in CI this test fails instead)\n\
                 !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n",
                missing.join(", ")
            );
            return;
        }
    };

    let mut c = Cluster::configure("console", 3, 500, "info");
    for id in ALL {
        c.start(id);
    }
    let (leader, term) = c.wait_agreed_leader(&ALL, 30).await;
    // The browser opens the leader's console (the one that knows every member's
    // replication progress) and traffic goes to the same node's data plane: the
    // console shows its own node's metrics.
    let node = leader;
    c.wait_seeded(&[node], 30).await;
    eprintln!("cluster up: leader {leader}, term {term}");
    check_http(&c, node).await;

    let out = TempDir::new("console-browser");
    let mut env = vec![
        ("SLUICE_ADMIN_URL", c.admin_url(node, "")),
        ("SLUICE_ADMIN_TOKEN", TOKEN.to_owned()),
        ("SLUICE_DATA_URL", c.data_url(node, "")),
        ("SLUICE_ROUTE_PATH", "/api/*".to_owned()),
        ("SLUICE_TRAFFIC_PATH", "/api/console".to_owned()),
        ("SLUICE_MEMBERS", ALL.len().to_string()),
        ("SLUICE_SCREENSHOT_DIR", out.display().to_string()),
    ];
    if let Ok(path) = std::env::var("SLUICE_CONSOLE_SCREENSHOT") {
        env.push(("SLUICE_CONSOLE_SCREENSHOT", path));
    }
    let started = Instant::now();
    let (ok, output) = run_script(&browser, &env, &out);
    eprintln!(
        "MEASURED console browser script: {:?}\n{output}",
        started.elapsed()
    );
    assert!(
        ok,
        "the console browser script failed:\n{output}\n(screenshots under {})\n{}",
        out.display(),
        c.logs()
    );
    assert!(
        out.join("console.png").is_file(),
        "no screenshot saved in {}",
        out.display()
    );
}
