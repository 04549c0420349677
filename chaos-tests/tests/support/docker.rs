//! The Docker backend: three `sluice` containers made by `scripts/docker-cluster.sh`
//! (image `sluice:latest`, networks NAME-public with the DNS alias `gateway` and
//! the internal NAME-cluster for Raft, a named volume per node), faulted with the
//! docker CLI: `docker kill` / `docker start`, `docker pause` / `unpause`, and
//! `docker network disconnect` / `connect` of the cluster network only, so a cut
//! node still serves clients on the public network.
//!
//! The test reaches the nodes on their published ports (fixed per backend, so
//! they survive restarts and network changes); the nodes reach each other as
//! `NAME-N.cluster`, an alias only the cluster network resolves.

use super::backend::{Addresses, Backend, BackendError};
use super::TOKEN;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The image the nodes and the load client run: `SLUICE_IMAGE`, else
/// `sluice:latest` (what `scripts/docker-cluster.sh` uses too).
pub fn image() -> String {
    std::env::var("SLUICE_IMAGE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sluice:latest".into())
}

/// The deliberately broken store the nodes run, if any: `SLUICE_CHAOS_FAULT`
/// (`skip-flush`, `drop-apply[:N]`), handed to them as `SLUICE_FAULT`. Only a
/// debug-build image honours it.
pub fn fault() -> Option<String> {
    std::env::var("SLUICE_CHAOS_FAULT")
        .ok()
        .filter(|s| !s.is_empty())
}

pub struct Docker {
    /// Prefix of the containers, networks and volumes (`NAME-1`, `NAME-public`).
    name: String,
    /// `scripts/docker-cluster.sh`'s state dir (config, secrets).
    dir: PathBuf,
    port_base: u16,
    admin_port_base: u16,
    /// The upstream's 9001 (`sluice echo-server`, also the webhook sink), published.
    upstream_port: u16,
    running: BTreeSet<u64>,
    /// Nodes disconnected from the cluster network.
    cut: BTreeSet<u64>,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/docker-cluster.sh")
}

fn docker(args: &[&str]) -> Result<String, BackendError> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(|e| BackendError::Failed(format!("docker {}: {e}", args.join(" "))))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(BackendError::Failed(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// Why the Docker tests cannot run here, if they cannot: no engine, or no image.
pub fn unavailable() -> Option<String> {
    match Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output()
    {
        Ok(o) if o.status.success() => {}
        _ => return Some("no Docker engine answers (`docker version` failed)".into()),
    }
    let image = image();
    if docker(&["image", "inspect", &image]).is_err() {
        return Some(format!(
            "no image {image}: build it with scripts/docker-image.sh"
        ));
    }
    None
}

/// The HTTP status of `GET path` on 127.0.0.1:`port`, if anything answers within
/// a second. (docker-proxy accepts on a published port even when the container is
/// down, so a TCP connect proves nothing.)
fn http_status(port: u16, path: &str) -> Option<u16> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let line = String::from_utf8_lossy(&buf);
    line.split(' ').nth(1)?.parse().ok()
}

impl Docker {
    /// Brings up cluster `name` (three nodes, the upstream) with
    /// `scripts/docker-cluster.sh up` and the test's admin token; node N publishes
    /// 127.0.0.1:`port_base`+N (data) and `admin_port_base`+N (admin), the
    /// upstream 127.0.0.1:`upstream_port`. A leftover cluster of the same name is
    /// removed first.
    pub fn up(name: &str, port_base: u16, admin_port_base: u16, upstream_port: u16) -> Docker {
        let dir = std::env::temp_dir().join(format!("sluice-docker-{name}"));
        let mut d = Docker {
            name: name.to_owned(),
            dir,
            port_base,
            admin_port_base,
            upstream_port,
            running: BTreeSet::new(),
            cut: BTreeSet::new(),
        };
        d.script("down");
        let out = d.script("up");
        assert!(
            out.status.success(),
            "docker-cluster.sh up failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        d.running = [1, 2, 3].into();
        d
    }

    fn script(&self, cmd: &str) -> std::process::Output {
        let mut c = Command::new("bash");
        // Never a broken store by accident: only SLUICE_CHAOS_FAULT asks for one.
        match fault() {
            Some(f) => c.env("SLUICE_FAULT", f),
            None => c.env_remove("SLUICE_FAULT"),
        };
        c.arg(script())
            .env("SLUICE_IMAGE", image())
            .arg(cmd)
            .env("SLUICE_DOCKER_NAME", &self.name)
            .env("SLUICE_DOCKER_DIR", &self.dir)
            .env("SLUICE_DOCKER_PORT_BASE", self.port_base.to_string())
            .env(
                "SLUICE_DOCKER_ADMIN_PORT_BASE",
                self.admin_port_base.to_string(),
            )
            .env(
                "SLUICE_DOCKER_UPSTREAM_PORT",
                self.upstream_port.to_string(),
            )
            .env("SLUICE_ADMIN_TOKEN", TOKEN)
            .env("SLUICE_LOG_LEVEL", "info")
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", script().display()))
    }

    pub fn container(&self, id: u64) -> String {
        format!("{}-{id}", self.name)
    }

    /// The network clients live on (the DNS alias `gateway` answers there).
    pub fn public_network(&self) -> String {
        format!("{}-public", self.name)
    }

    /// The upstream's webhook sink as the test reaches it (`GET` lists the
    /// `webhook-id`s it received); the nodes post to `http://upstream:9001/sink/...`.
    pub fn sink_url(&self) -> String {
        format!("http://127.0.0.1:{}/sink", self.upstream_port)
    }

    fn cluster_network(&self) -> String {
        format!("{}-cluster", self.name)
    }

    fn state(&self, id: u64) -> String {
        docker(&[
            "container",
            "inspect",
            "-f",
            "{{.State.Status}}",
            &self.container(id),
        ])
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "absent".into())
    }

    fn connect(&mut self, id: u64) -> Result<(), BackendError> {
        let c = self.container(id);
        docker(&[
            "network",
            "connect",
            "--alias",
            &format!("{c}.cluster"),
            &self.cluster_network(),
            &c,
        ])?;
        self.cut.remove(&id);
        Ok(())
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        if std::env::var_os("SLUICE_KEEP_DOCKER").is_some() {
            eprintln!(
                "SLUICE_KEEP_DOCKER set: cluster {} kept (SLUICE_DOCKER_NAME={} SLUICE_DOCKER_DIR={} scripts/docker-cluster.sh down)",
                self.name,
                self.name,
                self.dir.display()
            );
            return;
        }
        let _ = self.script("down");
    }
}

impl Backend for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn ids(&self) -> Vec<u64> {
        vec![1, 2, 3]
    }

    fn addresses(&self, id: u64) -> Addresses {
        Addresses {
            data: format!("http://127.0.0.1:{}", self.port_base + id as u16),
            admin: format!("http://127.0.0.1:{}", self.admin_port_base + id as u16),
            peer: format!("{}.cluster:9080", self.container(id)),
        }
    }

    fn upstream_url(&self) -> String {
        "http://upstream:9001".into()
    }

    fn start(&mut self, id: u64) -> Result<(), BackendError> {
        docker(&["start", &self.container(id)])?;
        self.running.insert(id);
        let deadline = Instant::now() + Duration::from_secs(30);
        let (dp, ap) = (self.port_base + id as u16, self.admin_port_base + id as u16);
        while http_status(dp, "/health").is_none() || http_status(ap, "/admin/cluster").is_none() {
            if Instant::now() > deadline {
                return Err(BackendError::Failed(format!(
                    "{} does not answer on 127.0.0.1:{dp} and :{ap} 30 s after docker start (state {})",
                    self.container(id),
                    self.state(id)
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    fn kill(&mut self, id: u64) -> Result<(), BackendError> {
        docker(&["kill", &self.container(id)])?;
        self.running.remove(&id);
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.state(id) == "running" {
            if Instant::now() > deadline {
                return Err(BackendError::Failed(format!(
                    "{} still running after docker kill",
                    self.container(id)
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// One `docker kill` of them all (the CLI kills in parallel).
    fn kill_many(&mut self, ids: &[u64]) -> Result<(), BackendError> {
        let names: Vec<String> = ids.iter().map(|id| self.container(*id)).collect();
        let mut args = vec!["kill"];
        args.extend(names.iter().map(String::as_str));
        docker(&args)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        for id in ids {
            self.running.remove(id);
            while self.state(*id) == "running" {
                if Instant::now() > deadline {
                    return Err(BackendError::Failed(format!(
                        "{} still running after docker kill",
                        self.container(*id)
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    fn pause(&mut self, id: u64) -> Result<(), BackendError> {
        docker(&["pause", &self.container(id)]).map(drop)
    }

    fn resume(&mut self, id: u64) -> Result<(), BackendError> {
        docker(&["unpause", &self.container(id)]).map(drop)
    }

    /// The largest group stays on the cluster network; every other node is
    /// disconnected from it (so it reaches no peer). Two groups of two or more
    /// cannot be made by disconnecting: `Unsupported`.
    fn partition(&mut self, groups: &[&[u64]]) -> Result<(), BackendError> {
        let keep: &[u64] = groups
            .iter()
            .max_by_key(|g| g.len())
            .copied()
            .unwrap_or(&[]);
        if groups.iter().filter(|g| g.len() > 1).count() > 1 {
            return Err(BackendError::Unsupported {
                backend: "docker",
                op: "split the nodes into two groups of two or more",
                why: "it cuts nodes off the one cluster network; it has no per-pair filter",
            });
        }
        for id in self.ids() {
            if !keep.contains(&id) && !self.cut.contains(&id) {
                docker(&[
                    "network",
                    "disconnect",
                    &self.cluster_network(),
                    &self.container(id),
                ])?;
                self.cut.insert(id);
            }
        }
        Ok(())
    }

    fn heal(&mut self) -> Result<(), BackendError> {
        for id in self.cut.clone() {
            self.connect(id)?;
        }
        Ok(())
    }

    fn is_running(&self, id: u64) -> bool {
        self.running.contains(&id)
    }

    fn log(&self, id: u64) -> String {
        match Command::new("docker")
            .args(["logs", &self.container(id)])
            .output()
        {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("(docker logs: {e})"),
        }
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for id in self.ids() {
            let log = self.log(id);
            let lines: Vec<&str> = log.lines().collect();
            out.push_str(&format!(
                "---- {} ({}{}), last lines of `docker logs {}`:\n",
                self.container(id),
                self.state(id),
                if self.cut.contains(&id) {
                    ", cut off the cluster network"
                } else {
                    ""
                },
                self.container(id)
            ));
            for l in &lines[lines.len().saturating_sub(20)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}
