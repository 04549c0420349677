//! [`Backend`] by local processes: each node is a `sluice run` process on
//! loopback with its own config dir (`node.yaml` + `gateway.yaml`) and data dir,
//! so a node killed with SIGKILL restarts from exactly what it had on disk.

use super::backend::{Addresses, Backend, BackendError};
use super::{SECRET, TOKEN};
use sluice_testkit::{free_port, tail, Echo, Logs, Proc, Signal, Sluice, TempDir};
use std::path::PathBuf;
use std::time::Duration;

/// One node's fixed identity: it keeps its ports and dirs across restarts.
struct LocalNode {
    id: u64,
    /// Data plane (`node.listen`).
    port: u16,
    /// Admin API and Raft RPC (`node.admin_listen`).
    admin_port: u16,
    /// Config dir (`node.yaml`, `gateway.yaml`), log and `data/`.
    dir: PathBuf,
    proc: Option<Proc>,
}

impl LocalNode {
    fn log(&self) -> PathBuf {
        self.dir.join("sluice.log")
    }
}

pub struct LocalProcesses {
    sluice: Sluice,
    /// Dropped first: every node process dies before its files are removed.
    nodes: Vec<LocalNode>,
    echo: Echo,
    /// Removed when the test passed, kept (and printed) when it failed.
    dir: TempDir,
}

impl LocalProcesses {
    /// Writes the config of `n` nodes (ids 1..=n, seeded with route `/api/*` ->
    /// service `echo`) where nodes `1..=voters` are in `cluster.peers` (they found
    /// the cluster) and the others are configured to join later; starts only the
    /// echo upstream. `log_level` is the nodes' `log.level`.
    pub fn configure(tag: &str, n: u64, voters: u64, snapshot_every: u64, log_level: &str) -> Self {
        let sluice = Sluice::find();
        let dir = TempDir::new(&format!("chaos-{tag}"));
        let echo = Echo::start(&sluice);
        let nodes: Vec<LocalNode> = (1..=n)
            .map(|id| LocalNode {
                id,
                port: free_port(),
                admin_port: free_port(),
                dir: dir.join(format!("node{id}")),
                proc: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .filter(|n| n.id <= voters)
            .map(|n| format!("{}: 127.0.0.1:{}", n.id, n.admin_port))
            .collect::<Vec<_>>()
            .join(", ");
        for node in &nodes {
            std::fs::create_dir_all(&node.dir).expect("create node dir");
            let yaml = format!(
                "node:\n  id: {id}\n  listen: 127.0.0.1:{port}\n  admin_listen: 127.0.0.1:{admin}\n  \
                 data_dir: {data}\n  workers: 2\n  shutdown_timeout: 5s\n\
                 cluster:\n  peers: {{ {peers} }}\n  secret: {SECRET}\n  snapshot_every: {snapshot_every}\n\
                 admin:\n  token: {TOKEN}\n\
                 log:\n  level: \"{log_level}\"\n",
                id = node.id,
                port = node.port,
                admin = node.admin_port,
                data = node.dir.join("data").display(),
            );
            std::fs::write(node.dir.join("node.yaml"), yaml).expect("write node.yaml");
            let gateway = format!(
                "services:\n  echo: {{ upstreams: [{}] }}\nroutes:\n  - path: /api/*\n    service: echo\n    auth: none\n",
                echo.url()
            );
            std::fs::write(node.dir.join("gateway.yaml"), gateway).expect("write gateway.yaml");
        }
        LocalProcesses {
            sluice,
            nodes,
            echo,
            dir,
        }
    }

    fn node(&self, id: u64) -> &LocalNode {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut LocalNode {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn running(&self, id: u64) -> Result<&Proc, BackendError> {
        self.node(id)
            .proc
            .as_ref()
            .ok_or_else(|| BackendError::Failed(format!("node {id} is not running")))
    }
}

impl Backend for LocalProcesses {
    fn name(&self) -> &'static str {
        "local processes"
    }

    fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    fn addresses(&self, id: u64) -> Addresses {
        let n = self.node(id);
        Addresses {
            data: format!("http://127.0.0.1:{}", n.port),
            admin: format!("http://127.0.0.1:{}", n.admin_port),
            peer: format!("127.0.0.1:{}", n.admin_port),
        }
    }

    fn upstream_url(&self) -> String {
        self.echo.url()
    }

    fn start(&mut self, id: u64) -> Result<(), BackendError> {
        let n = self.node(id);
        if n.proc.is_some() {
            return Err(BackendError::Failed(format!(
                "node {id} is already running"
            )));
        }
        let dir = n.dir.to_str().expect("utf-8 dir").to_owned();
        let proc = self
            .sluice
            .spawn(&format!("node {id}"), &["run", "--config", &dir], &n.log());
        proc.wait_listening(&[n.port, n.admin_port], Duration::from_secs(30));
        self.node_mut(id).proc = Some(proc);
        Ok(())
    }

    fn kill(&mut self, id: u64) -> Result<(), BackendError> {
        self.running(id)?;
        if let Some(proc) = self.node_mut(id).proc.take() {
            proc.kill9();
        }
        Ok(())
    }

    fn pause(&mut self, id: u64) -> Result<(), BackendError> {
        self.running(id)?.signal(Signal::Stop);
        Ok(())
    }

    fn resume(&mut self, id: u64) -> Result<(), BackendError> {
        self.running(id)?.signal(Signal::Cont);
        Ok(())
    }

    /// Unsupported: every local node listens on the one loopback interface, and
    /// cutting the links between some of them would take a network namespace per
    /// node or root-only packet filters per port pair. The Docker backend gets it
    /// from its networks (`docker network disconnect`).
    fn partition(&mut self, _groups: &[&[u64]]) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: self.name(),
            op: "partition",
            why: "all nodes share one loopback interface; use the Docker backend",
        })
    }

    fn heal(&mut self) -> Result<(), BackendError> {
        Err(BackendError::Unsupported {
            backend: self.name(),
            op: "heal",
            why: "local processes are never partitioned",
        })
    }

    fn is_running(&self, id: u64) -> bool {
        self.node(id).proc.is_some()
    }

    fn log(&self, id: u64) -> String {
        std::fs::read_to_string(self.node(id).log()).unwrap_or_default()
    }

    fn logs(&self) -> String {
        let mut out = format!("---- logs (full files under {}) ----\n", self.dir.display());
        for n in &self.nodes {
            let state = match &n.proc {
                Some(p) => p.state(),
                None => "down (stopped by the test)".to_owned(),
            };
            out.push_str(&format!(
                "---- node {} (admin {}, data {}, {state}) ----\n{}\n",
                n.id,
                n.admin_port,
                n.port,
                tail(&n.log(), 40)
            ));
        }
        out.push_str(&self.echo.logs());
        out
    }
}
