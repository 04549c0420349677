//! Test fixtures: real `sluice` processes (gateway and echo upstream) on loopback,
//! each in its own temp config dir, killed on drop. Tests wait for state (a port
//! answering, a metric value), never for a fixed time.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A port that was free a moment ago (bind 0, read, release).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-test-{}-{}-{}",
        tag,
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Polls `cond` until it holds or `deadline` passes.
pub fn wait_until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// A child process killed on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        let end = Instant::now() + deadline;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(Instant::now() < end, "process {} did not exit", self.pid());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident set size in KiB (`VmHWM`).
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM in /proc status")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str], log: PathBuf) -> Proc {
    let out = std::fs::File::create(&log).expect("create log file");
    let err = out.try_clone().expect("clone log file");
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn sluice");
    Proc { child, log }
}

/// A real upstream: `sluice echo-server` on its own port.
pub struct Echo {
    pub proc: Proc,
    pub port: u16,
}

impl Echo {
    pub fn start() -> Echo {
        Echo::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Echo {
        let dir = temp_dir("echo");
        let addr = format!("127.0.0.1:{port}");
        let proc = spawn(
            &["echo-server", "--listen", &addr, "--workers", "1"],
            dir.join("echo.log"),
        );
        wait_until("echo server port", Duration::from_secs(20), || {
            port_open(port)
        });
        Echo { proc, port }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A real gateway node with its own config dir.
pub struct Gateway {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Gateway {
    /// Writes `node.yaml` (listen port, 2 workers, debug logs) plus `files` into a
    /// fresh dir and starts `sluice run` on it; returns once `/health` answers.
    pub fn start(files: &[(&str, &str)]) -> Gateway {
        Gateway::start_with(files, "")
    }

    /// [`Gateway::start`] with extra lines (indented) under `node:`.
    pub fn start_with(files: &[(&str, &str)], node_extra: &str) -> Gateway {
        let dir = temp_dir("gw");
        let port = free_port();
        let node = format!(
            "node:\n  id: 1\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
             data_dir: {data}\n  workers: 2\n  shutdown_timeout: 10s\n{node_extra}\
             log:\n  level: info,sluice=debug\n",
            admin = free_port(),
            data = dir.join("data").display(),
        );
        std::fs::write(dir.join("node.yaml"), node).expect("write node.yaml");
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write config file");
        }
        let proc = spawn(
            &["run", "--config", dir.to_str().expect("utf-8 temp dir")],
            dir.join("sluice.log"),
        );
        let mut gw = Gateway { proc, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !port_open(port) {
            if let Ok(Some(status)) = gw.proc.child.try_wait() {
                panic!("sluice exited early ({status}): {}", gw.proc.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "sluice did not listen: {}",
                gw.proc.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        gw.port = port;
        gw
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join(name), text).expect("write config file");
    }
}

/// Runs `sluice validate` on a dir; returns (exit code, stdout).
pub fn validate(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["validate", "--config", dir.to_str().expect("utf-8 path")])
        .output()
        .expect("run sluice validate");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}
