//! Test fixtures for one node: a real `sluice run` process with its own temp config
//! dir, built on the shared test kit (`sluice-testkit`: processes, ports, temp
//! dirs, the echo upstream, metrics, and `wait_for`). Tests wait for state (a port
//! answering, a metric value), never for a fixed time.
#![allow(dead_code)]

use sluice_testkit::{free_port, wait_for_async, Echo, Logs, Metrics, Proc, Sluice, TempDir};
use std::time::Duration;

/// The binary these tests run: cargo builds it for this package's tests.
pub fn sluice() -> Sluice {
    Sluice::at(env!("CARGO_BIN_EXE_sluice"))
}

/// A real upstream (`sluice echo-server`) on a free port.
pub fn echo() -> Echo {
    Echo::start(&sluice())
}

/// A real gateway node with its own config dir.
pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
    /// `node.admin_listen` (admin API; needs an `admin.token` in one of the files).
    pub admin_port: u16,
    /// Declared after `proc`: the process dies before its dir is removed.
    pub dir: TempDir,
}

impl Gateway {
    /// Writes `node.yaml` (listen port, 2 workers, debug logs) plus `files` into a
    /// fresh dir and starts `sluice run` on it; returns once it listens.
    pub fn start(files: &[(&str, &str)]) -> Gateway {
        Gateway::start_with(files, "")
    }

    /// [`Gateway::start`] with extra lines (indented) under `node:`.
    pub fn start_with(files: &[(&str, &str)], node_extra: &str) -> Gateway {
        let gw = Gateway::spawn(files, node_extra);
        gw.proc.wait_listening(&[gw.port], Duration::from_secs(20));
        gw
    }

    /// [`Gateway::start_with`] without waiting for it to listen.
    pub fn spawn(files: &[(&str, &str)], node_extra: &str) -> Gateway {
        Gateway::spawn_with_env(files, node_extra, &[])
    }

    /// [`Gateway::spawn`] with extra environment variables for the process.
    pub fn spawn_with_env(
        files: &[(&str, &str)],
        node_extra: &str,
        env: &[(&str, &str)],
    ) -> Gateway {
        let dir = TempDir::new("gw");
        let port = free_port();
        let admin_port = free_port();
        let node = format!(
            "node:\n  id: 1\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
             data_dir: {data}\n  workers: 2\n  shutdown_timeout: 10s\n{node_extra}\
             log:\n  level: info,sluice=debug\n",
            admin = admin_port,
            data = dir.join("data").display(),
        );
        std::fs::write(dir.join("node.yaml"), node).expect("write node.yaml");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write config file");
        }
        let proc = sluice().spawn_with_env(
            "gateway",
            &["run", "--config", dir.to_str().expect("utf-8 temp dir")],
            env,
            &dir.join("sluice.log"),
        );
        Gateway {
            proc,
            port,
            admin_port,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A URL on the admin listener.
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.admin_port, path)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write config file");
    }

    /// One scrape of `/metrics`.
    pub async fn metrics(&self) -> Metrics {
        Metrics::scrape(&self.url("/metrics"))
            .await
            .unwrap_or_else(|e| panic!("scrape metrics: {e}\n{}", self.logs()))
    }

    /// The value of one series in a fresh scrape (`None` if absent).
    pub async fn metric(&self, series: &str) -> Option<f64> {
        self.metrics().await.sample(series)
    }

    /// Polls `/metrics` until `series` reads `want`; panics after `secs` seconds
    /// with the last value read and the gateway's log.
    pub async fn wait_metric(&self, series: &str, want: f64, secs: u64) {
        wait_for_async(
            format!("{series} to read {want}"),
            Duration::from_secs(secs),
            self,
            || async {
                let seen = self.metric(series).await;
                if seen == Some(want) {
                    Ok(())
                } else {
                    Err(seen)
                }
            },
        )
        .await
    }
}

impl Logs for Gateway {
    fn logs(&self) -> String {
        self.proc.logs()
    }
}

/// Runs `sluice validate` on a dir; returns (exit code, stdout).
pub fn validate(dir: &std::path::Path) -> (i32, String) {
    let out = sluice()
        .command()
        .args(["validate", "--config", dir.to_str().expect("utf-8 path")])
        .output()
        .expect("run sluice validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// Sends `request` (head and body) on a new connection to `port`, reads the
/// answer (its head, then a `Content-Length` body), and waits for the node to close
/// the connection it now keeps idle. Returns the answer's head, lower-cased, and
/// how long the idle connection was kept open.
pub fn idle_close_after(port: u16, request: &[u8]) -> (String, Duration) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.write_all(request).expect("request written");
    let head = read_answer(&mut s);
    let idle_from = std::time::Instant::now();
    let end = s.read(&mut [0; 64]);
    assert!(
        matches!(end, Ok(0))
            || matches!(&end, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the idle connection was not closed: {end:?} after {:?} ({head})",
        idle_from.elapsed()
    );
    (head, idle_from.elapsed())
}

/// Reads one answer off a kept-alive connection: its head, then as many body
/// bytes as its `Content-Length` says. Returns the head, lower-cased.
pub fn read_answer(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let head = sluice_testkit::read_raw_head(s).expect("an answer head");
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    s.read_exact(&mut body).expect("the answer body");
    head
}
