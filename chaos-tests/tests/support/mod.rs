//! The harness: a [`Cluster`] of real `sluice` nodes driven over HTTP only.
//!
//! What runs the nodes is a [`Backend`] (start, kill -9, pause/resume, partition,
//! addresses): [`LocalProcesses`] today, Docker containers next. Everything a test
//! asks of the cluster besides that (the admin API, Raft RPC, the data plane, and
//! waiting until the nodes agree) is HTTP here, the same for every backend.
//! Assertions print every node's state and log tail via [`Cluster::logs`]; the
//! backend keeps the files when a test fails. Processes, ports, temp dirs and
//! `wait_for` come from the shared kit (`sluice-testkit`).
#![allow(dead_code)]

pub mod backend;
pub mod docker;
pub mod local;

pub use backend::{Backend, BackendError};
pub use local::LocalProcesses;
pub use sluice_testkit::{send, Answer};

use serde_json::{json, Value};
use sluice_testkit::{wait_for_async, Logs, Seen};
use std::collections::BTreeSet;
use std::time::Duration;

pub const SECRET: &str = "chaos-cluster-secret";
pub const TOKEN: &str = "chaos-admin-token";

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

pub struct Cluster {
    backend: Box<dyn Backend>,
    client: awc::Client,
}

impl Cluster {
    /// A cluster of whatever `backend` runs; no node is started yet.
    pub fn new(backend: Box<dyn Backend>) -> Cluster {
        Cluster {
            backend,
            client: sluice_testkit::client(Duration::from_secs(15)),
        }
    }

    /// `n` local nodes (ids 1..=n, all voters, seeded with route `/api/*` ->
    /// service `echo`), none started. `log_level` is the nodes' `log.level` (the
    /// node adds `openraft=warn` unless it names openraft).
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
        Cluster::new(Box::new(LocalProcesses::configure(
            tag,
            n,
            voters,
            snapshot_every,
            log_level,
        )))
    }

    pub fn ids(&self) -> Vec<u64> {
        self.backend.ids()
    }

    pub fn running(&self) -> Vec<u64> {
        let ids = self.backend.ids();
        ids.into_iter()
            .filter(|id| self.backend.is_running(*id))
            .collect()
    }

    // ------------------------------------------------------------ faults ----

    /// Starts node `id`; returns once both its listeners accept connections.
    pub fn start(&mut self, id: u64) {
        let r = self.backend.start(id);
        self.expect(r, "start", id);
    }

    /// SIGKILL (no drain, no flush); returns when the node is gone.
    pub fn kill9(&mut self, id: u64) {
        let r = self.backend.kill(id);
        self.expect(r, "kill -9", id);
    }

    /// SIGKILL to every node in `ids` at once (a crash of them all), as far as the
    /// backend can; returns when all are gone.
    pub fn kill9_many(&mut self, ids: &[u64]) {
        let r = self.backend.kill_many(ids);
        if let Err(e) = r {
            panic!("kill -9 nodes {ids:?}: {e}\n{}", self.logs());
        }
    }

    /// Freezes node `id`: it answers nothing, to peers or clients, until resumed.
    pub fn pause(&mut self, id: u64) {
        let r = self.backend.pause(id);
        self.expect(r, "pause", id);
    }

    pub fn resume(&mut self, id: u64) {
        let r = self.backend.resume(id);
        self.expect(r, "resume", id);
    }

    /// Splits the nodes' network into `groups`; `Unsupported` on backends that
    /// cannot (local processes), so a test can tell "cannot run here" from a bug.
    pub fn partition(&mut self, groups: &[&[u64]]) -> Result<(), BackendError> {
        self.backend.partition(groups)
    }

    pub fn heal(&mut self) -> Result<(), BackendError> {
        self.backend.heal()
    }

    fn expect(&self, r: Result<(), BackendError>, op: &str, id: u64) {
        if let Err(e) = r {
            panic!("{op} node {id}: {e}\n{}", self.logs());
        }
    }

    // ------------------------------------------------------- where/what ----

    /// The tail of every node's log and of the upstream's, plus where the whole
    /// files are (kept when a test fails).
    pub fn logs(&self) -> String {
        self.backend.logs()
    }

    /// Node `id`'s whole log.
    pub fn log(&self, id: u64) -> String {
        self.backend.log(id)
    }

    /// The echo upstream as the nodes reach it.
    pub fn upstream_url(&self) -> String {
        self.backend.upstream_url()
    }

    /// Node `id`'s admin listener as its peers reach it (`POST /admin/cluster/nodes`).
    pub fn peer_addr(&self, id: u64) -> String {
        self.backend.addresses(id).peer
    }

    pub fn admin_url(&self, id: u64, path: &str) -> String {
        format!("{}{path}", self.backend.addresses(id).admin)
    }

    pub fn data_url(&self, id: u64, path: &str) -> String {
        format!("{}{path}", self.backend.addresses(id).data)
    }

    pub fn client(&self) -> &awc::Client {
        &self.client
    }

    // ------------------------------------------------------------ HTTP ----

    /// `GET /admin/cluster` on node `id`, or `None` if it does not answer 200
    /// within 2 s.
    pub async fn info(&self, id: u64) -> Option<Info> {
        info_at(&self.client, &self.backend.addresses(id).admin).await
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
        admin_put(&self.client, &self.admin_url(id, ""), path, body).await
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

    /// `GET path` on node `id`'s data plane with extra request headers.
    pub async fn data_get_with(
        &self,
        id: u64,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let mut req = self.client.get(self.data_url(id, path));
        for (n, v) in headers {
            req = req.append_header((*n, *v));
        }
        send(req, None).await
    }

    /// Replaces the gateway config through node `via` with what `edit` makes of
    /// the current one (`GET /admin/config`, so the seeded `echo` service and
    /// `/api/*` route stay unless `edit` drops them), sent again while the answer
    /// is 503 (an election) or 422 before the seed is in; returns the version it
    /// was applied at once every running node serves it.
    pub async fn edit_config(&self, via: u64, edit: impl Fn(&mut Value)) -> u64 {
        let version = wait_for_async(
            format!("PUT /admin/config through node {via} to be applied"),
            Duration::from_secs(20),
            self,
            || async {
                let current = self.admin_get(via, "/admin/config").await?;
                if current.status != 200 || !current.body["services"]["echo"].is_object() {
                    return Err(format!(
                        "GET /admin/config: {} {}",
                        current.status, current.text
                    ));
                }
                let mut config = current.body;
                edit(&mut config);
                let a = self.admin_put(via, "/admin/config", &config).await?;
                match a.body["version"].as_u64() {
                    Some(v) if a.status == 200 => Ok(v),
                    _ if a.status == 503 => Err(format!("503 {}", a.text)),
                    _ => panic!(
                        "PUT /admin/config {config}: {} {}\n{}",
                        a.status,
                        a.text,
                        self.logs()
                    ),
                }
            },
        )
        .await;
        self.wait_version(&self.running(), version, 20).await;
        version
    }

    /// A new API client (through node `via`) and an API key of it: (client id,
    /// key). The data plane's user id of requests with the key is the client id.
    pub async fn new_api_key(&self, via: u64) -> (String, String) {
        let body = json!({ "name": "chaos", "roles": [], "scopes": [] });
        let a = self
            .admin_call(via, "POST", "/admin/clients", Some(&body))
            .await
            .unwrap_or_else(|e| panic!("POST /admin/clients: {e}"));
        assert_eq!(a.status, 200, "POST /admin/clients: {a:?}\n{}", self.logs());
        let client_id = a.body["client_id"].as_str().expect("client_id").to_owned();
        let a = self
            .admin_call(
                via,
                "POST",
                "/admin/keys",
                Some(&json!({ "client_id": client_id })),
            )
            .await
            .unwrap_or_else(|e| panic!("POST /admin/keys: {e}"));
        assert_eq!(a.status, 200, "POST /admin/keys: {a:?}\n{}", self.logs());
        let version = a.body["version"].as_u64().expect("version");
        let key = a.body["key"].as_str().expect("key").to_owned();
        self.wait_applied(&self.running(), version, 20).await;
        (client_id, key)
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
        wait_for_async(
            format!("nodes {ids:?} to agree on a leader"),
            Duration::from_secs(secs),
            self,
            || async {
                let infos = self.infos(ids).await;
                let agreed = infos.as_ref().and_then(|v| agreed_leader(v, ids));
                agreed.ok_or_else(|| Seen(brief(&infos)))
            },
        )
        .await
    }

    /// Waits until every node in `ids` has applied log index `index` (which may
    /// be an entry that changed nothing, e.g. a repeated seed).
    pub async fn wait_applied(&self, ids: &[u64], index: u64, secs: u64) {
        self.wait_infos(ids, secs, format!("to apply index {index}"), |i| {
            i.applied >= index
        })
        .await
    }

    /// Waits until every node in `ids` serves `version` on its data plane, where
    /// `version` is what a config-changing admin write answered (the data plane
    /// is rebuilt only when the gateway config changes, so `data_plane_version`
    /// lags `applied_index` across entries that change nothing).
    pub async fn wait_version(&self, ids: &[u64], version: u64, secs: u64) {
        self.wait_infos(ids, secs, format!("to serve version {version}"), |i| {
            i.config_version >= version && i.data_plane_version >= version
        })
        .await
    }

    /// Waits until every node in `ids` answers `/admin/cluster` with an [`Info`]
    /// for which `ok` holds.
    pub async fn wait_infos(
        &self,
        ids: &[u64],
        secs: u64,
        what: String,
        ok: impl Fn(&Info) -> bool,
    ) {
        wait_for_async(
            format!("nodes {ids:?} {what}"),
            Duration::from_secs(secs),
            self,
            || async {
                let infos = self.infos(ids).await;
                if infos.as_ref().is_some_and(|v| v.iter().all(&ok)) {
                    Ok(())
                } else {
                    Err(Seen(brief(&infos)))
                }
            },
        )
        .await
    }

    /// Waits until every node in `ids` proxies `/api/*` to the echo upstream:
    /// the YAML seed has committed and reached their data planes. Admin writes
    /// that name service `echo` are refused (422 unknown service) before that.
    pub async fn wait_seeded(&self, ids: &[u64], secs: u64) {
        for id in ids {
            wait_for_async(
                format!("node {id} to serve the seeded route /api/*"),
                Duration::from_secs(secs),
                self,
                || async {
                    let a = self.data_get(*id, "/api/seeded").await;
                    match a {
                        Ok(a) if a.status == 200 && a.body["path"] == "/api/seeded" => Ok(()),
                        other => Err(other),
                    }
                },
            )
            .await;
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

impl Logs for Cluster {
    fn logs(&self) -> String {
        self.backend.logs()
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

/// `GET /admin/cluster` on the admin API at `admin` (a base URL), or `None` if it
/// does not answer 200 within 2 s.
pub async fn info_at(client: &awc::Client, admin: &str) -> Option<Info> {
    let a = send(
        client
            .get(format!("{admin}/admin/cluster"))
            .bearer_auth(TOKEN)
            .timeout(Duration::from_secs(2)),
        None,
    )
    .await
    .ok()?;
    (a.status == 200).then_some(a.body).and_then(Info::parse)
}

/// `PUT` a JSON body to `path` on the admin API at `admin` (a base URL).
pub async fn admin_put(
    client: &awc::Client,
    admin: &str,
    path: &str,
    body: &Value,
) -> Result<Answer, String> {
    admin_json(client.put(format!("{admin}{path}")), body).await
}

/// `POST path` with a JSON body on the admin API at `admin` (a base URL).
pub async fn admin_post(
    client: &awc::Client,
    admin: &str,
    path: &str,
    body: &Value,
) -> Result<Answer, String> {
    admin_json(client.post(format!("{admin}{path}")), body).await
}

/// Sends `req` with the admin token and a JSON body.
async fn admin_json(req: awc::ClientRequest, body: &Value) -> Result<Answer, String> {
    let req = req.bearer_auth(TOKEN).content_type("application/json");
    send(req, Some(body.to_string().into_bytes())).await
}

/// The body of `PUT /admin/routes/{id}` for a public wildcard route to the echo
/// service (the tests call it without credentials).
pub fn route_body(prefix: &str) -> Value {
    json!({ "path": format!("/{prefix}/*"), "service": "echo", "auth": "none" })
}
