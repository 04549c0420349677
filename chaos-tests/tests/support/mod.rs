//! The harness: real `sluice` processes on loopback, driven over HTTP only.
//!
//! A [`Cluster`] owns one temp dir, one echo upstream and N nodes; each node has
//! its own config dir (`node.yaml` + `gateway.yaml`) and data dir, so a node killed
//! with SIGKILL restarts from exactly what it had on disk. Every process is killed
//! when its guard drops. Assertions print the tail of every log via
//! [`Cluster::logs`]; the temp dir is removed when the test passed, unless
//! `SLUICE_CHAOS_KEEP` is set.
//!
//! Ports come from a per-file base below the kernel's ephemeral range (32768+), so
//! no outgoing connection can be holding one when a node (re)binds it; each port is
//! probed with a bind before it is handed out.
#![allow(dead_code)]

use awc::http::header::HeaderMap;
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const SECRET: &str = "chaos-cluster-secret";
pub const TOKEN: &str = "chaos-admin-token";

/// Polls `$cond` (an expression that may `.await` and yields `Option<T>`) every
/// 20 ms until it is `Some`, and evaluates to that value. After `$secs` seconds it
/// panics with `$what` (evaluated only then, so it can show the last state seen)
/// and the cluster's logs.
macro_rules! wait_for {
    ($cluster:expr, $secs:expr, $what:expr, $cond:expr) => {{
        let started = std::time::Instant::now();
        let limit = std::time::Duration::from_secs_f64($secs as f64);
        let mut polls = 0u32;
        loop {
            polls += 1;
            if let Some(v) = $cond {
                break v;
            }
            if started.elapsed() > limit {
                panic!(
                    "timed out after {:?} ({} polls) waiting for {}\n{}",
                    limit,
                    polls,
                    $what,
                    $cluster.logs()
                );
            }
            actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

// ------------------------------------------------------------------ binary ----

/// The `sluice` binary: `$SLUICE_BIN`, else next to this test executable
/// (`<target>/<profile>/sluice`), else `<CARGO_TARGET_DIR or target>/debug/sluice`.
pub fn sluice_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SLUICE_BIN") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "SLUICE_BIN={} does not exist; build it first: cargo build -p sluice",
            p.display()
        );
        return p;
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("chaos-tests sits in the workspace")
        .to_path_buf();
    let mut candidates = Vec::new();
    // <target>/<profile>/deps/cluster-<hash> -> <target>/<profile>/sluice
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile) = exe.parent().and_then(Path::parent) {
            candidates.push(profile.join("sluice"));
        }
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace.join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    candidates.push(target.join("debug").join("sluice"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!("no sluice binary at {candidates:?}; build it first: cargo build -p sluice")
        })
}

// ------------------------------------------------------------------- ports ----

/// A loopback port nobody was listening on a moment ago. Ports come from
/// `[20000, 32000)` starting at an offset derived from the pid (a per-run base, so
/// two suites running at once start far apart), each probed with a bind.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() % 120) * 100,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
        if taken.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free loopback port in [{LOW}, {})", LOW + SPAN);
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
        .is_ok()
}

/// A fresh dir under the system temp dir, unique per test and process.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "sluice-chaos-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// The last `lines` lines of a file (or a note that it is missing).
fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

// --------------------------------------------------------------- processes ----

/// A child process, SIGKILLed and reaped on drop. (`RefCell` so that a shared
/// borrow, e.g. while printing logs, can still ask whether it died.)
pub struct Proc {
    child: RefCell<Child>,
}

impl Proc {
    /// Starts `sluice <args>` with stdout and stderr appended to `log`.
    fn spawn(args: &[&str], log: &Path) -> Proc {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open log file");
        let _ = writeln!(out, "=== harness: sluice {} ===", args.join(" "));
        let err = out.try_clone().expect("clone log file");
        let child = Command::new(sluice_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn sluice");
        Proc {
            child: RefCell::new(child),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.borrow().id()
    }

    /// `Some(status)` once the process has exited (reaping it).
    fn exited(&self) -> Option<std::process::ExitStatus> {
        self.child.borrow_mut().try_wait().ok().flatten()
    }

    /// SIGKILL, then reap (so the ports and the sled lock are free on return).
    fn kill9(self) {
        drop(self);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let child = self.child.get_mut();
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// How a process ended, naming the signal if one killed it.
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status.signal() {
        Some(9) => "killed by signal 9 (SIGKILL) from outside the harness".into(),
        Some(15) => "stopped by signal 15 (SIGTERM) from outside the harness".into(),
        Some(sig) => format!("killed by signal {sig} (crash?)"),
        // `sluice run` exits 0 only after a graceful stop: SIGTERM/SIGINT, which
        // the harness never sends.
        None if status.success() => {
            "exited 0: a graceful stop (SIGTERM/SIGINT from outside the harness?)".into()
        }
        None => format!("exited with {status}"),
    }
}

/// The upstream every route points at: `sluice echo-server`.
pub struct Echo {
    proc: Proc,
    pub port: u16,
    pub log: PathBuf,
}

impl Echo {
    pub fn start(dir: &Path) -> Echo {
        let port = free_port();
        let log = dir.join("echo.log");
        let addr = format!("127.0.0.1:{port}");
        let proc = Proc::spawn(&["echo-server", "--listen", &addr, "--workers", "1"], &log);
        let end = Instant::now() + Duration::from_secs(20);
        while !port_open(port) {
            if let Some(status) = proc.exited() {
                panic!("echo server exited ({status}): {}", tail(&log, 50));
            }
            assert!(
                Instant::now() < end,
                "echo server did not listen: {}",
                tail(&log, 50)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Echo { proc, port, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

// ----------------------------------------------------------------- cluster ----

/// One node's fixed identity: it keeps its ports and dirs across restarts.
pub struct Node {
    pub id: u64,
    /// Data plane (`node.listen`).
    pub port: u16,
    /// Admin API and Raft RPC (`node.admin_listen`).
    pub admin_port: u16,
    /// Config dir (`node.yaml`, `gateway.yaml`), log and `data/`.
    pub dir: PathBuf,
    proc: Option<Proc>,
}

impl Node {
    pub fn log(&self) -> PathBuf {
        self.dir.join("sluice.log")
    }

    pub fn is_running(&self) -> bool {
        self.proc.is_some()
    }
}

/// What `GET /admin/cluster` says, in the fields the tests use.
#[derive(Debug, Clone)]
pub struct Info {
    pub node_id: u64,
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub applied: u64,
    pub config_version: u64,
    pub data_plane_version: u64,
    pub last_log: u64,
    pub snapshot: u64,
    pub purged: u64,
    pub raw: Value,
}

impl Info {
    fn parse(v: Value) -> Option<Info> {
        let n = |k: &str| v[k].as_u64();
        Some(Info {
            node_id: n("node_id")?,
            state: v["state"].as_str()?.to_owned(),
            leader: n("leader_id"),
            term: n("term")?,
            applied: n("applied_index")?,
            config_version: n("config_version")?,
            data_plane_version: n("data_plane_version")?,
            last_log: n("last_log_index")?,
            snapshot: n("snapshot_index")?,
            purged: n("purged_index")?,
            raw: v,
        })
    }
}

/// An HTTP answer: status, headers and the body as JSON (`Null` when it is not).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct Cluster {
    pub dir: PathBuf,
    pub echo: Echo,
    pub nodes: Vec<Node>,
    client: awc::Client,
}

impl Cluster {
    /// Writes the config of `n` nodes (ids 1..=n, all voters, seeded with route
    /// `/api/*` -> service `echo`) but starts none of them. `log_level` is the
    /// nodes' `log.level` (the node adds `openraft=warn` unless it names openraft).
    pub fn configure(tag: &str, n: u64, snapshot_every: u64, log_level: &str) -> Cluster {
        Cluster::configure_with_voters(tag, n, n, snapshot_every, log_level)
    }

    /// [`Cluster::configure`] where only nodes `1..=voters` are in `cluster.peers`
    /// (they found the cluster); the others are configured to join it later.
    pub fn configure_with_voters(
        tag: &str,
        n: u64,
        voters: u64,
        snapshot_every: u64,
        log_level: &str,
    ) -> Cluster {
        let dir = temp_dir(tag);
        let echo = Echo::start(&dir);
        let nodes: Vec<Node> = (1..=n)
            .map(|id| Node {
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
                "services:\n  echo: {{ upstreams: [{}] }}\nroutes:\n  - path: /api/*\n    service: echo\n",
                echo.url()
            );
            std::fs::write(node.dir.join("gateway.yaml"), gateway).expect("write gateway.yaml");
        }
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(15))
            .disable_redirects()
            .finish();
        Cluster {
            dir,
            echo,
            nodes,
            client,
        }
    }

    pub fn node(&self, id: u64) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    fn node_mut(&mut self, id: u64) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.id == id)
            .unwrap_or_else(|| panic!("no node {id}"))
    }

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.is_running())
            .map(|n| n.id)
            .collect()
    }

    /// Starts `sluice run` for node `id` on its config and data dirs; returns once
    /// both listeners accept connections.
    pub fn start(&mut self, id: u64) {
        let (dir, log, port, admin) = {
            let n = self.node(id);
            assert!(!n.is_running(), "node {id} is already running");
            (n.dir.clone(), n.log(), n.port, n.admin_port)
        };
        let proc = Proc::spawn(&["run", "--config", dir.to_str().expect("utf-8 dir")], &log);
        let end = Instant::now() + Duration::from_secs(30);
        while !(port_open(port) && port_open(admin)) {
            if let Some(status) = proc.exited() {
                panic!(
                    "node {id} {} at start\n{}",
                    describe(status),
                    tail(&log, 80)
                );
            }
            assert!(
                Instant::now() < end,
                "node {id} did not listen within 30 s\n{}",
                tail(&log, 80)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.node_mut(id).proc = Some(proc);
    }

    /// SIGKILL (no drain, no flush) and reap; returns when the process is gone.
    pub fn kill9(&mut self, id: u64) {
        let proc = self.node_mut(id).proc.take();
        let proc = proc.unwrap_or_else(|| panic!("node {id} is not running"));
        proc.kill9();
    }

    /// The tail of every node's log and of the echo server's, plus where the
    /// whole files are (kept when a test fails).
    pub fn logs(&self) -> String {
        let mut out = format!("---- logs (full files under {}) ----\n", self.dir.display());
        for n in &self.nodes {
            let state = match &n.proc {
                None => "down (stopped by the test)".to_owned(),
                Some(p) => match p.exited() {
                    None => format!("running, pid {}", p.pid()),
                    Some(status) => format!("DIED: {}", describe(status)),
                },
            };
            out.push_str(&format!(
                "---- node {} (admin {}, data {}, {state}) ----\n{}\n",
                n.id,
                n.admin_port,
                n.port,
                tail(&n.log(), 40)
            ));
        }
        let echo = match self.echo.proc.exited() {
            None => "running".to_owned(),
            Some(status) => format!("DIED: {}", describe(status)),
        };
        out.push_str(&format!(
            "---- echo ({echo}) ----\n{}\n",
            tail(&self.echo.log, 10)
        ));
        out
    }

    // ------------------------------------------------------------ HTTP ----

    pub fn admin_url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.node(id).admin_port)
    }

    pub fn data_url(&self, id: u64, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.node(id).port)
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    /// `GET /admin/cluster` on node `id`, or `None` if it does not answer 200
    /// within 2 s.
    pub async fn info(&self, id: u64) -> Option<Info> {
        let a = send(
            self.client
                .get(self.admin_url(id, "/admin/cluster"))
                .bearer_auth(TOKEN)
                .timeout(Duration::from_secs(2)),
            None,
        )
        .await
        .ok()?;
        (a.status == 200).then_some(a.body).and_then(Info::parse)
    }

    /// `info` of every node in `ids` (all must answer).
    pub async fn infos(&self, ids: &[u64]) -> Option<Vec<Info>> {
        let mut out = Vec::new();
        for id in ids {
            out.push(self.info(*id).await?);
        }
        Some(out)
    }

    pub async fn admin_get(&self, id: u64, path: &str) -> Result<Answer, String> {
        send(
            self.client.get(self.admin_url(id, path)).bearer_auth(TOKEN),
            None,
        )
        .await
    }

    pub async fn admin_put(&self, id: u64, path: &str, body: &Value) -> Result<Answer, String> {
        admin_put(&self.client, self.node(id).admin_port, path, body).await
    }

    /// `POST` (with a JSON body) or `DELETE` (without) on the admin API.
    pub async fn admin_call(
        &self,
        id: u64,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let url = self.admin_url(id, path);
        let req = match method {
            "POST" => self.client.post(url),
            "DELETE" => self.client.delete(url),
            other => panic!("admin_call: unsupported method {other}"),
        };
        let req = req
            .bearer_auth(TOKEN)
            .insert_header(("content-type", "application/json"));
        send(req, body.map(|b| b.to_string().into_bytes())).await
    }

    pub async fn data_get(&self, id: u64, path: &str) -> Result<Answer, String> {
        send(self.client.get(self.data_url(id, path)), None).await
    }

    /// `POST /raft/<rpc>` with the given secret header (if any) and body.
    pub async fn raft_rpc(
        &self,
        id: u64,
        rpc: &str,
        secret: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut req = self
            .client
            .post(self.admin_url(id, &format!("/raft/{rpc}")))
            .content_type("application/octet-stream");
        if let Some(s) = secret {
            req = req.insert_header(("x-sluice-cluster-secret", s));
        }
        send(req, Some(body)).await
    }

    // ------------------------------------------------------- waiting ----

    /// Waits until every node in `ids` answers and all agree on one leader (among
    /// `ids`) and one term, and that leader says it leads; returns (leader, term).
    pub async fn wait_agreed_leader(&self, ids: &[u64], secs: u64) -> (u64, u64) {
        let mut last: Option<Vec<Info>>;
        wait_for!(
            self,
            secs,
            format!(
                "nodes {ids:?} to agree on a leader; last seen: {}",
                brief(&last)
            ),
            {
                let infos = self.infos(ids).await;
                let agreed = infos.as_ref().and_then(|v| agreed_leader(v, ids));
                last = infos;
                agreed
            }
        )
    }

    /// Waits until every node in `ids` has applied log index `index` (which may
    /// be an entry that changed nothing, e.g. a repeated seed).
    pub async fn wait_applied(&self, ids: &[u64], index: u64, secs: u64) {
        let mut last: Option<Vec<Info>>;
        wait_for!(
            self,
            secs,
            format!(
                "nodes {ids:?} to apply index {index}; last seen: {}",
                brief(&last)
            ),
            {
                let infos = self.infos(ids).await;
                let ok = infos
                    .as_ref()
                    .is_some_and(|v| v.iter().all(|i| i.applied >= index));
                last = infos;
                ok.then_some(())
            }
        )
    }

    /// Waits until every node in `ids` serves `version` on its data plane, where
    /// `version` is what a config-changing admin write answered (the data plane
    /// is rebuilt only when the gateway config changes, so `data_plane_version`
    /// lags `applied_index` across entries that change nothing).
    pub async fn wait_version(&self, ids: &[u64], version: u64, secs: u64) {
        let mut last: Option<Vec<Info>>;
        wait_for!(
            self,
            secs,
            format!(
                "nodes {ids:?} to serve version {version}; last seen: {}",
                brief(&last)
            ),
            {
                let infos = self.infos(ids).await;
                let ok = infos.as_ref().is_some_and(|v| {
                    v.iter()
                        .all(|i| i.config_version >= version && i.data_plane_version >= version)
                });
                last = infos;
                ok.then_some(())
            }
        )
    }

    /// Waits until every node in `ids` proxies `/api/*` to the echo upstream:
    /// the YAML seed has committed and reached their data planes. Admin writes
    /// that name service `echo` are refused (422 unknown service) before that.
    pub async fn wait_seeded(&self, ids: &[u64], secs: u64) {
        for id in ids {
            let mut last: Option<Result<Answer, String>>;
            wait_for!(
                self,
                secs,
                format!("node {id} to serve the seeded route /api/*; last answer: {last:?}"),
                {
                    let a = self.data_get(*id, "/api/seeded").await;
                    let ok = a
                        .as_ref()
                        .is_ok_and(|a| a.status == 200 && a.body["path"] == "/api/seeded");
                    last = Some(a);
                    ok.then_some(())
                }
            );
        }
    }

    /// The route ids in node `id`'s replicated gateway config (local read).
    pub async fn route_ids(&self, id: u64) -> Option<BTreeSet<String>> {
        let a = self.admin_get(id, "/admin/config").await.ok()?;
        if a.status != 200 {
            return None;
        }
        Some(
            a.body["routes"]
                .as_array()?
                .iter()
                .filter_map(|r| r["id"].as_str().or(r["path"].as_str()))
                .map(str::to_owned)
                .collect(),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            drop(n.proc.take());
        }
        if std::thread::panicking() {
            eprintln!("test failed; its files are kept in {}", self.dir.display());
        } else if std::env::var_os("SLUICE_CHAOS_KEEP").is_some() {
            eprintln!("SLUICE_CHAOS_KEEP: files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `Some((leader, term))` when every info names the same leader (one of `ids`)
/// and term, and exactly one of them is in state `Leader` (that leader).
pub fn agreed_leader(infos: &[Info], ids: &[u64]) -> Option<(u64, u64)> {
    let first = infos.first()?;
    let leader = first.leader?;
    let term = first.term;
    let same = infos
        .iter()
        .all(|i| i.leader == Some(leader) && i.term == term);
    let leaders: Vec<u64> = infos
        .iter()
        .filter(|i| i.state == "Leader")
        .map(|i| i.node_id)
        .collect();
    (same && ids.contains(&leader) && leaders == [leader]).then_some((leader, term))
}

/// A one-line summary per node, for failure messages.
pub fn brief(infos: &Option<Vec<Info>>) -> String {
    match infos {
        None => "(some node did not answer /admin/cluster)".into(),
        Some(v) => v
            .iter()
            .map(|i| {
                format!(
                    "[node {} {} leader={:?} term={} applied={} dp={} last_log={} snap={} purged={}]",
                    i.node_id,
                    i.state,
                    i.leader,
                    i.term,
                    i.applied,
                    i.data_plane_version,
                    i.last_log,
                    i.snapshot,
                    i.purged
                )
            })
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Sends a request, reads the whole body (≤ 4 MiB) and parses it as JSON when it is.
pub async fn send(req: awc::ClientRequest, body: Option<Vec<u8>>) -> Result<Answer, String> {
    let sent = match body {
        Some(b) => req.send_body(b).await,
        None => req.send().await,
    };
    let mut resp = sent.map_err(|e| format!("send: {e}"))?;
    let bytes = resp
        .body()
        .limit(4 << 20)
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(Answer {
        status: resp.status().as_u16(),
        headers: resp.headers().clone(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// `PUT` a JSON body to an admin path on the node listening on `admin_port`.
pub async fn admin_put(
    client: &awc::Client,
    admin_port: u16,
    path: &str,
    body: &Value,
) -> Result<Answer, String> {
    let req = client
        .put(format!("http://127.0.0.1:{admin_port}{path}"))
        .bearer_auth(TOKEN)
        .content_type("application/json");
    send(req, Some(body.to_string().into_bytes())).await
}

/// The body of `PUT /admin/routes/{id}` for a wildcard route to the echo service.
pub fn route_body(prefix: &str) -> Value {
    json!({ "path": format!("/{prefix}/*"), "service": "echo" })
}
