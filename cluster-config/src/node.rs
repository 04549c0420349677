//! Node-local settings (`node`, `cluster`, `admin`, `log`): never replicated.

use crate::error::ConfigError;
use crate::keyword::unknown;
use ipnet::IpNet;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    /// Unique, > 0 (default 1).
    pub id: u64,
    /// Data plane (default `0.0.0.0:8080`).
    pub listen: SocketAddr,
    /// Admin API and Raft RPC (default `127.0.0.1:9080`).
    pub admin_listen: SocketAddr,
    /// sled files (default `./data/node-{id}`).
    pub data_dir: PathBuf,
    /// Data-plane worker threads (default: available parallelism).
    pub workers: usize,
    /// Drain limit on SIGTERM (default 30 s).
    pub shutdown_timeout: Duration,
    pub tls: Option<TlsFiles>,
    /// `node.admin_tls`: TLS on the admin listener (admin API and Raft RPC), and
    /// the CA that node-to-node calls verify peers with.
    pub admin_tls: Option<AdminTls>,
    /// Upstream connections per worker thread (default 512): beyond it requests queue.
    pub upstream_pool_limit: usize,
    /// `node.upstream_ca_file`: PEM certificates trusted for `https://` upstreams on
    /// top of the public web roots (a private CA, a self-signed upstream).
    pub upstream_ca_file: Option<PathBuf>,
    /// `node.request_metrics` (default true): per-request metrics on the data plane.
    /// Off only to measure their cost (`scripts/bench.sh`).
    pub request_metrics: bool,
    /// `node.jwt_cache` (default true): verified JWTs are remembered per worker
    /// until they expire. Off only to measure what signature checks cost.
    pub jwt_cache: bool,
    /// `node.rate_limit_sync_interval` (default 100 ms, 10 ms to 10 s): how often
    /// this node reports the hits it admitted to the cluster's rate-limit
    /// accounting (one batched Raft entry per interval).
    pub rate_limit_sync_interval: Duration,
    /// `node.client_header_timeout` (default 10 s, at most 10 min): a data-plane
    /// connection that has not sent a complete first request head by then is
    /// closed (408 if it sent part of one), so silent connections cannot pile up.
    pub client_header_timeout: Duration,
    /// `node.keepalive_timeout` (default 60 s, at most 1 h; 0 turns keep-alive
    /// off): an idle kept-alive data-plane connection is closed after it.
    pub keepalive_timeout: Duration,
    /// `node.max_connections` (default 10 000): data-plane connections this node
    /// serves at once (spread over the workers); beyond it new connections wait in
    /// the kernel's backlog. Keep it below the process's open-files limit minus
    /// `admin_max_connections` and the upstream pools.
    pub max_connections: usize,
    /// `node.admin_max_connections` (default 256): the admin port's own limit, so
    /// it stays reachable when the data port is saturated.
    pub admin_max_connections: usize,
    /// `node.trusted_proxies` (default none): the peers whose `X-Forwarded-For`
    /// the data plane believes when it works out the client address.
    pub trusted_proxies: TrustedProxies,
    /// `cluster.peers`: node id -> admin address. Empty: one-node cluster.
    pub peers: BTreeMap<u64, String>,
    /// `cluster.secret`; required when `peers` has more than one node.
    pub cluster_secret: Option<String>,
    /// `cluster.snapshot_every` (default 500): Raft snapshots after this many
    /// applied entries, and the log before them is purged (bounded disk).
    pub snapshot_every: u64,
    /// `admin.token`: the bootstrap admin token.
    pub admin_token: Option<String>,
    pub log_format: LogFormat,
    /// `log.level`, an `EnvFilter` directive (default `info`).
    pub log_level: String,
}

/// Load balancers and proxies in front of the data plane (`node.trusted_proxies`):
/// IP addresses and CIDR blocks. A request whose TCP peer is one of them has its
/// client address taken from `X-Forwarded-For`; any other peer is the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// `addr` is trusted: inside one of the blocks. An IPv4 address written as
    /// IPv6 (`::ffff:10.0.0.1`, as a dual-stack listener reports IPv4 peers)
    /// counts as the IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|net| net.contains(&addr))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The blocks, as configured (a bare address is a /32 or /128).
    pub fn blocks(&self) -> &[IpNet] {
        &self.0
    }

    /// Parses `10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32` or `::1`. Host bits set in a
    /// CIDR (`10.0.0.1/8`) are refused: the operator may have meant the address.
    pub fn parse_block(text: &str) -> Result<IpNet, String> {
        let text = text.trim();
        if let Ok(addr) = text.parse::<IpAddr>() {
            return Ok(IpNet::from(addr.to_canonical()));
        }
        let net = text.parse::<IpNet>().map_err(|_| {
            format!("invalid address {text:?} (expected an IP address or a CIDR block such as 10.0.0.0/8)")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; write the network ({}) or a single address",
                net.trunc()
            ));
        }
        Ok(net)
    }
}

impl FromIterator<IpNet> for TrustedProxies {
    fn from_iter<I: IntoIterator<Item = IpNet>>(iter: I) -> Self {
        TrustedProxies(iter.into_iter().collect())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `node.admin_tls`. Every node of a cluster sets it, or none does: peers are
/// called over `https` with the certificate checked against `ca_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// This node's certificate (chain) and key, served on `admin_listen` and, with
    /// `client_auth`, presented to peers.
    pub files: TlsFiles,
    /// PEM CA certificate(s) peers' certificates are verified with.
    pub ca_file: PathBuf,
    /// Mutual TLS: the admin listener refuses a client without a certificate that
    /// `ca_file` verifies (default false; the admin token and the cluster secret
    /// still apply either way).
    pub client_auth: bool,
}

keywords! {
    /// `log.format`.
    #[derive(Default)]
    pub enum LogFormat {
        /// One JSON object per line, for log shippers.
        Json = "json",
        /// Human-readable lines (the default).
        #[default]
        Pretty = "pretty",
    }
}

/// Default data-plane listener.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";
/// Default admin / Raft RPC listener.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9080";
/// Default drain limit on SIGTERM.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upstream connections per worker thread.
pub const DEFAULT_UPSTREAM_POOL_LIMIT: usize = 512;
/// Default `node.client_header_timeout`.
pub const DEFAULT_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest `node.client_header_timeout`.
pub const MAX_CLIENT_HEADER_TIMEOUT: Duration = Duration::from_secs(600);
/// Default `node.keepalive_timeout`.
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest `node.keepalive_timeout`.
pub const MAX_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `node.max_connections`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default `node.admin_max_connections`.
pub const DEFAULT_ADMIN_MAX_CONNECTIONS: usize = 256;
/// Largest `node.max_connections` / `node.admin_max_connections`.
pub const MAX_CONNECTIONS_BOUND: usize = 1_000_000;
/// Longest `node.shutdown_timeout`.
pub const MAX_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3600);
/// Default `node.rate_limit_sync_interval`.
pub const DEFAULT_RATE_LIMIT_SYNC_INTERVAL: Duration = Duration::from_millis(100);
/// Bounds of `node.rate_limit_sync_interval`: shorter floods the Raft log, longer
/// leaves the nodes' views of a key's count too far apart to share a limit well.
pub const RATE_LIMIT_SYNC_INTERVAL_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(10));

impl Default for NodeConfig {
    /// The settings of a node whose config has no `node`, `cluster`, `admin` or `log`
    /// section: node 1, a one-node cluster, default listeners.
    fn default() -> Self {
        NodeConfig {
            id: 1,
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9080)),
            data_dir: PathBuf::from("./data/node-1"),
            workers: default_workers(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            tls: None,
            admin_tls: None,
            upstream_pool_limit: DEFAULT_UPSTREAM_POOL_LIMIT,
            upstream_ca_file: None,
            request_metrics: true,
            jwt_cache: true,
            rate_limit_sync_interval: DEFAULT_RATE_LIMIT_SYNC_INTERVAL,
            client_header_timeout: DEFAULT_CLIENT_HEADER_TIMEOUT,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            admin_max_connections: DEFAULT_ADMIN_MAX_CONNECTIONS,
            trusted_proxies: TrustedProxies::default(),
            peers: BTreeMap::new(),
            cluster_secret: None,
            snapshot_every: 500,
            admin_token: None,
            log_format: LogFormat::default(),
            log_level: "info".to_owned(),
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// The node-local sections as written. Every field is optional so one missing value
// does not stop the others from being checked; `build` reports what is required.

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct NodeSection {
    pub id: Option<u64>,
    pub listen: Option<String>,
    pub admin_listen: Option<String>,
    pub data_dir: Option<String>,
    pub workers: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub tls: Option<TlsSection>,
    pub admin_tls: Option<AdminTlsSection>,
    pub upstream_pool_limit: Option<usize>,
    pub upstream_ca_file: Option<String>,
    pub request_metrics: Option<bool>,
    pub jwt_cache: Option<bool>,
    pub rate_limit_sync_interval: Option<String>,
    pub trusted_proxies: Option<Vec<String>>,
    pub client_header_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub max_connections: Option<usize>,
    pub admin_max_connections: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct TlsSection {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AdminTlsSection {
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub ca_file: Option<String>,
    pub client_auth: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ClusterSection {
    /// Keys stay text here so a bad id is reported with its own key path.
    pub peers: Option<BTreeMap<String, String>>,
    pub secret: Option<String>,
    pub snapshot_every: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct AdminSection {
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct LogSection {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// The node-local sections of a directory, each with the file it came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeSections {
    pub node: Option<(String, NodeSection)>,
    pub cluster: Option<(String, ClusterSection)>,
    pub admin: Option<(String, AdminSection)>,
    pub log: Option<(String, LogSection)>,
}

impl NodeSections {
    /// Validates the sections and fills defaults. Problems go to `errors`; the
    /// returned value then holds defaults in place of the bad values.
    pub(crate) fn build(&self, config_dir: &Path, errors: &mut Vec<ConfigError>) -> NodeConfig {
        let mut cfg = NodeConfig::default();
        let empty_node = NodeSection::default();
        let (node_file, node) = match &self.node {
            Some((file, section)) => (Some(file.as_str()), section),
            None => (None, &empty_node),
        };
        let mut err = |file: Option<&str>, path: &str, msg: String| {
            errors.push(ConfigError::new(file, path, msg));
        };

        if let Some(id) = node.id {
            if id == 0 {
                err(node_file, "node.id", "must be > 0".into());
            } else {
                cfg.id = id;
            }
        }
        for (key, text, slot) in [
            ("node.listen", &node.listen, &mut cfg.listen),
            (
                "node.admin_listen",
                &node.admin_listen,
                &mut cfg.admin_listen,
            ),
        ] {
            if let Some(text) = text {
                match text.trim().parse::<SocketAddr>() {
                    Ok(addr) => *slot = addr,
                    Err(e) => err(
                        node_file,
                        key,
                        format!("invalid socket address {text:?} (expected ip:port): {e}"),
                    ),
                }
            }
        }
        if node.listen.is_some() && node.admin_listen.is_some() && cfg.listen == cfg.admin_listen {
            err(
                node_file,
                "node.admin_listen",
                format!("must differ from node.listen ({})", cfg.listen),
            );
        }
        cfg.data_dir = match &node.data_dir {
            Some(dir) if dir.trim().is_empty() => {
                err(node_file, "node.data_dir", "must not be empty".into());
                cfg.data_dir
            }
            Some(dir) => PathBuf::from(dir),
            None => PathBuf::from(format!("./data/node-{}", cfg.id)),
        };
        if let Some(workers) = node.workers {
            if workers == 0 {
                err(node_file, "node.workers", "must be > 0".into());
            } else {
                cfg.workers = workers;
            }
        }
        if let Some(on) = node.request_metrics {
            cfg.request_metrics = on;
        }
        if let Some(on) = node.jwt_cache {
            cfg.jwt_cache = on;
        }
        if let Some(limit) = node.upstream_pool_limit {
            if limit == 0 {
                err(node_file, "node.upstream_pool_limit", "must be > 0".into());
            } else {
                cfg.upstream_pool_limit = limit;
            }
        }
        // Zero is allowed for these: "do not wait for in-flight requests", "no
        // keep-alive".
        for (key, text, max, slot) in [
            (
                "node.shutdown_timeout",
                &node.shutdown_timeout,
                MAX_SHUTDOWN_TIMEOUT,
                &mut cfg.shutdown_timeout,
            ),
            (
                "node.keepalive_timeout",
                &node.keepalive_timeout,
                MAX_KEEPALIVE_TIMEOUT,
                &mut cfg.keepalive_timeout,
            ),
        ] {
            if let Some(text) = text {
                match crate::validate::parse_bounded_duration(text, max) {
                    Ok(d) => *slot = d,
                    Err(msg) => err(node_file, key, msg),
                }
            }
        }
        if let Some(text) = &node.client_header_timeout {
            match crate::validate::parse_positive_duration(text)
                .and_then(|d| crate::validate::bounded(text, d, MAX_CLIENT_HEADER_TIMEOUT))
            {
                Ok(d) => cfg.client_header_timeout = d,
                Err(msg) => err(node_file, "node.client_header_timeout", msg),
            }
        }
        for (key, value, slot) in [
            (
                "node.max_connections",
                node.max_connections,
                &mut cfg.max_connections,
            ),
            (
                "node.admin_max_connections",
                node.admin_max_connections,
                &mut cfg.admin_max_connections,
            ),
        ] {
            match value {
                None => {}
                Some(n) if n == 0 || n > MAX_CONNECTIONS_BOUND => err(
                    node_file,
                    key,
                    format!("{n} is out of range: 1 to {MAX_CONNECTIONS_BOUND}"),
                ),
                Some(n) => *slot = n,
            }
        }
        if let Some(text) = &node.rate_limit_sync_interval {
            let (min, max) = RATE_LIMIT_SYNC_INTERVAL_BOUNDS;
            match crate::validate::parse_duration(text) {
                Ok(d) if d < min || d > max => err(
                    node_file,
                    "node.rate_limit_sync_interval",
                    format!("{text:?} is out of range: 10ms to 10s"),
                ),
                Ok(d) => cfg.rate_limit_sync_interval = d,
                Err(msg) => err(node_file, "node.rate_limit_sync_interval", msg),
            }
        }
        for (i, text) in node.trusted_proxies.iter().flatten().enumerate() {
            match TrustedProxies::parse_block(text) {
                Ok(net) => cfg.trusted_proxies.0.push(net),
                Err(msg) => err(node_file, &format!("node.trusted_proxies[{i}]"), msg),
            }
        }
        // A file named at `path`, resolved against the config dir; it must exist.
        let mut file_at = |path: &str, value: &Option<String>| -> Option<PathBuf> {
            match value.as_deref().map(str::trim) {
                None | Some("") => {
                    err(node_file, path, "required".into());
                    None
                }
                Some(name) => {
                    let resolved = config_dir.join(name);
                    if resolved.is_file() {
                        Some(resolved)
                    } else {
                        err(
                            node_file,
                            path,
                            format!("file not found: {}", resolved.display()),
                        );
                        None
                    }
                }
            }
        };
        if node.upstream_ca_file.is_some() {
            cfg.upstream_ca_file = file_at("node.upstream_ca_file", &node.upstream_ca_file);
        }
        if let Some(tls) = &node.tls {
            let cert = file_at("node.tls.cert_file", &tls.cert_file);
            let key = file_at("node.tls.key_file", &tls.key_file);
            if let (Some(cert_file), Some(key_file)) = (cert, key) {
                cfg.tls = Some(TlsFiles {
                    cert_file,
                    key_file,
                });
            }
        }
        if let Some(tls) = &node.admin_tls {
            let cert = file_at("node.admin_tls.cert_file", &tls.cert_file);
            let key = file_at("node.admin_tls.key_file", &tls.key_file);
            let ca = file_at("node.admin_tls.ca_file", &tls.ca_file);
            if let (Some(cert_file), Some(key_file), Some(ca_file)) = (cert, key, ca) {
                cfg.admin_tls = Some(AdminTls {
                    files: TlsFiles {
                        cert_file,
                        key_file,
                    },
                    ca_file,
                    client_auth: tls.client_auth.unwrap_or(false),
                });
            }
        }

        if let Some((file, cluster)) = &self.cluster {
            let file = Some(file.as_str());
            for (key, addr) in cluster.peers.iter().flatten() {
                let path = format!("cluster.peers.{key}");
                match key.trim().parse::<u64>() {
                    Ok(0) => err(file, &path, "node id must be > 0".into()),
                    Ok(id) => {
                        if let Err(msg) = check_host_port(addr) {
                            err(file, &path, msg);
                        }
                        cfg.peers.insert(id, addr.trim().to_owned());
                    }
                    Err(_) => err(file, &path, format!("node id {key:?} is not a number")),
                }
            }
            // A node missing from `peers` is joining an existing cluster: it does
            // not bootstrap, and waits to be added (`POST /admin/cluster/nodes`).
            match cluster.snapshot_every {
                Some(0) => err(file, "cluster.snapshot_every", "must be > 0".into()),
                Some(n) => cfg.snapshot_every = n,
                None => {}
            }
            match cluster.secret.as_deref() {
                Some("") => err(file, "cluster.secret", "must not be empty".into()),
                Some(secret) => cfg.cluster_secret = Some(secret.to_owned()),
                None if cfg.peers.len() > 1 => err(
                    file,
                    "cluster.secret",
                    "required when cluster.peers has more than one node".into(),
                ),
                None => {}
            }
        }

        if let Some((file, admin)) = &self.admin {
            match admin.token.as_deref() {
                // An empty bearer token would let anyone in.
                Some("") => err(Some(file), "admin.token", "must not be empty".into()),
                Some(token) => cfg.admin_token = Some(token.to_owned()),
                None => {}
            }
        }

        if let Some((file, log)) = &self.log {
            let file = Some(file.as_str());
            if let Some(text) = log.format.as_deref().map(str::trim) {
                match LogFormat::parse(text) {
                    Some(format) => cfg.log_format = format,
                    None => err(
                        file,
                        "log.format",
                        unknown("log format", text, &LogFormat::expected()),
                    ),
                }
            }
            match log.level.as_deref().map(str::trim) {
                None => {}
                Some("") => err(file, "log.level", "must not be empty".into()),
                Some(level) => cfg.log_level = level.to_owned(),
            }
        }
        cfg
    }
}

/// `host:port` as a peer address: an IP socket address, or a host name and a port
/// (peers may be named by DNS, so this cannot be a `SocketAddr` parse alone).
fn check_host_port(addr: &str) -> Result<(), String> {
    let addr = addr.trim();
    if addr.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let bad = || format!("invalid address {addr:?} (expected host:port)");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    match port.parse::<u16>() {
        Ok(p) if p > 0 && host_ok => Ok(()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_dir_with_env;
    use crate::testutil::{assert_has, test_env, TestDir};

    #[track_caller]
    fn check(yaml: &str, expected: &[(&str, &str)]) {
        let dir = TestDir::with(&[("n.yaml", yaml)]);
        let errors = match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => panic!("expected errors for:\n{yaml}\ngot {:?}", cfg.node),
            Err(e) => e,
        };
        let file = dir.file("n.yaml");
        for (path, fragment) in expected {
            assert_has(&errors, Some(&file), path, fragment);
        }
        assert_eq!(
            errors.0.len(),
            expected.len(),
            "unexpected extra errors:\n{errors}"
        );
    }

    #[track_caller]
    fn load_node(yaml: &str) -> NodeConfig {
        let dir = TestDir::with(&[("n.yaml", yaml)]);
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => cfg.node,
            Err(e) => panic!("expected to load:\n{yaml}\ngot:\n{e}"),
        }
    }

    #[test]
    fn defaults() {
        let node = load_node("node: { id: 3 }\n");
        let want = NodeConfig {
            id: 3,
            data_dir: PathBuf::from("./data/node-3"),
            ..NodeConfig::default()
        };
        assert_eq!(node, want);
        assert!(node.workers >= 1);
        assert_eq!(node.log_level, "info");
        assert_eq!(node.log_format, LogFormat::Pretty);
        assert_eq!(node.upstream_pool_limit, 512);
        assert_eq!(node.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn node_values() {
        check(
            "node: { id: 0, listen: nope, admin_listen: '127.0.0.1:99999', workers: 0, upstream_pool_limit: 0, shutdown_timeout: later, data_dir: '' }\n",
            &[
                ("node.id", "must be > 0"),
                ("node.listen", "invalid socket address \"nope\""),
                ("node.admin_listen", "invalid socket address \"127.0.0.1:99999\""),
                ("node.workers", "must be > 0"),
                ("node.upstream_pool_limit", "must be > 0"),
                ("node.shutdown_timeout", "invalid duration \"later\""),
                ("node.data_dir", "must not be empty"),
            ],
        );
        check(
            "node: { listen: '127.0.0.1:9000', admin_listen: '127.0.0.1:9000' }\n",
            &[(
                "node.admin_listen",
                "must differ from node.listen (127.0.0.1:9000)",
            )],
        );
        check("node: { id: -1 }\n", &[("node.id", "invalid type")]);
        // A value of the wrong type does not hide the rest of its section.
        check(
            "node: { id: one, workers: 0, listen: nope, request_metrics: [yes] }\ncluster: { peers: { 1: [a] }, snapshot_every: 0 }\n",
            &[
                ("node.id", "invalid type"),
                ("node.workers", "must be > 0"),
                ("node.listen", "invalid socket address \"nope\""),
                ("node.request_metrics", "invalid type"),
                ("cluster.peers.1", "invalid type"),
                ("cluster.snapshot_every", "must be > 0"),
            ],
        );
        let node = load_node("node: { listen: '[::]:8443', shutdown_timeout: 0s, workers: 3, upstream_pool_limit: 64, data_dir: /var/lib/sluice }\n");
        assert_eq!(node.listen.to_string(), "[::]:8443");
        assert_eq!(node.shutdown_timeout, Duration::ZERO);
        assert_eq!((node.workers, node.upstream_pool_limit), (3, 64));
        assert_eq!(node.data_dir, PathBuf::from("/var/lib/sluice"));
    }

    #[test]
    fn tls_files_are_resolved_against_the_config_dir() {
        let dir = TestDir::with(&[(
            "n.yaml",
            "node:\n  tls: { cert_file: certs/c.pem, key_file: certs/k.pem }\n",
        )]);
        dir.write("certs/c.pem", "c");
        let errors = match load_dir_with_env(dir.path(), &test_env) {
            Err(e) => e,
            Ok(_) => panic!("loaded without the key file"),
        };
        let missing = dir.path().join("certs/k.pem");
        assert_has(
            &errors,
            Some(&dir.file("n.yaml")),
            "node.tls.key_file",
            &format!("file not found: {}", missing.display()),
        );
        assert_eq!(errors.0.len(), 1, "{errors}");

        dir.write("certs/k.pem", "k");
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => assert_eq!(
                cfg.node.tls,
                Some(TlsFiles {
                    cert_file: dir.path().join("certs/c.pem"),
                    key_file: missing
                })
            ),
            Err(e) => panic!("{e}"),
        }

        check(
            "node:\n  tls: { cert_file: c.pem }\n",
            &[
                ("node.tls.cert_file", "file not found"),
                ("node.tls.key_file", "required"),
            ],
        );
    }

    #[test]
    fn the_upstream_ca_file_is_resolved_against_the_config_dir() {
        assert_eq!(load_node("node: {}\n").upstream_ca_file, None);
        let dir = TestDir::with(&[("n.yaml", "node:\n  upstream_ca_file: certs/ca.pem\n")]);
        let errors = match load_dir_with_env(dir.path(), &test_env) {
            Err(e) => e,
            Ok(_) => panic!("loaded without the CA file"),
        };
        assert_has(
            &errors,
            Some(&dir.file("n.yaml")),
            "node.upstream_ca_file",
            "file not found",
        );
        dir.write("certs/ca.pem", "pem");
        match load_dir_with_env(dir.path(), &test_env) {
            Ok(cfg) => assert_eq!(
                cfg.node.upstream_ca_file,
                Some(dir.path().join("certs/ca.pem"))
            ),
            Err(e) => panic!("{e}"),
        }
        check(
            "node:\n  upstream_ca_file: ''\n",
            &[("node.upstream_ca_file", "required")],
        );
    }

    #[test]
    fn connection_limits_and_timeouts() {
        let node = load_node("node: {}\n");
        assert_eq!(node.client_header_timeout, DEFAULT_CLIENT_HEADER_TIMEOUT);
        assert_eq!(node.keepalive_timeout, DEFAULT_KEEPALIVE_TIMEOUT);
        assert_eq!(node.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(node.admin_max_connections, DEFAULT_ADMIN_MAX_CONNECTIONS);
        let node = load_node(
            "node:\n  client_header_timeout: 2s\n  keepalive_timeout: 0s\n  max_connections: 40\n  admin_max_connections: 8\n",
        );
        assert_eq!(node.client_header_timeout, Duration::from_secs(2));
        assert_eq!(node.keepalive_timeout, Duration::ZERO);
        assert_eq!((node.max_connections, node.admin_max_connections), (40, 8));
        check(
            "node:\n  client_header_timeout: 0s\n  keepalive_timeout: 18446744073709551615s\n  \
             max_connections: 0\n  admin_max_connections: 2000000\n  shutdown_timeout: 2h\n",
            &[
                ("node.client_header_timeout", "must be greater than 0"),
                ("node.keepalive_timeout", "is too long; at most 1h"),
                ("node.max_connections", "out of range"),
                ("node.admin_max_connections", "out of range"),
                ("node.shutdown_timeout", "is too long"),
            ],
        );
    }

    #[test]
    fn cluster_peers_and_secret() {
        check(
            "cluster:\n  peers: { 1: 'a:1', 2: 'b:2' }\n",
            &[(
                "cluster.secret",
                "required when cluster.peers has more than one node",
            )],
        );
        check(
            "cluster:\n  secret: s\n  peers: { 1: 'a:1', x: 'b:2', 0: 'c:3', 2: nope, 3: 'h:0', 5: ':80' }\n",
            &[
                ("cluster.peers.x", "node id \"x\" is not a number"),
                ("cluster.peers.0", "node id must be > 0"),
                ("cluster.peers.2", "invalid address \"nope\" (expected host:port)"),
                ("cluster.peers.3", "invalid address"),
                ("cluster.peers.5", "invalid address"),
            ],
        );
        check(
            "cluster:\n  secret: ''\n",
            &[("cluster.secret", "must not be empty")],
        );
        // One peer (this node) needs no secret.
        let node = load_node("cluster:\n  peers: { 1: 'localhost:9080' }\n");
        assert_eq!(
            node.peers.get(&1).map(String::as_str),
            Some("localhost:9080")
        );
        assert_eq!(node.cluster_secret, None);
    }

    #[test]
    fn admin_and_log() {
        check(
            "admin: { token: '' }\n",
            &[("admin.token", "must not be empty")],
        );
        check(
            "admin: { token: '${EMPTY}' }\n",
            &[("admin.token", "must not be empty")],
        );
        check(
            "log: { format: xml, level: '' }\n",
            &[
                (
                    "log.format",
                    "unknown log format \"xml\" (expected json or pretty)",
                ),
                ("log.level", "must not be empty"),
            ],
        );
        let node = load_node("admin: { token: t0k }\nlog: { format: pretty, level: debug }\n");
        assert_eq!(node.admin_token.as_deref(), Some("t0k"));
        assert_eq!(
            (node.log_format, node.log_level.as_str()),
            (LogFormat::Pretty, "debug")
        );
    }

    #[test]
    fn rate_limit_sync_interval_is_bounded() {
        assert_eq!(
            load_node("node: { id: 1 }\n").rate_limit_sync_interval,
            Duration::from_millis(100)
        );
        for (text, want) in [("10ms", 10), ("250ms", 250), ("10s", 10_000)] {
            let node = load_node(&format!("node: {{ rate_limit_sync_interval: {text} }}\n"));
            assert_eq!(
                node.rate_limit_sync_interval,
                Duration::from_millis(want),
                "{text}"
            );
        }
        for text in ["9ms", "0s", "11s", "1m"] {
            check(
                &format!("node: {{ rate_limit_sync_interval: {text} }}\n"),
                &[(
                    "node.rate_limit_sync_interval",
                    &format!("{text:?} is out of range: 10ms to 10s"),
                )],
            );
        }
        check(
            "node: { rate_limit_sync_interval: often }\n",
            &[(
                "node.rate_limit_sync_interval",
                "invalid duration \"often\"",
            )],
        );
    }

    #[test]
    fn trusted_proxies_are_addresses_and_cidr_blocks() {
        let node = load_node("node: {}\n");
        assert!(node.trusted_proxies.is_empty());
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(!node.trusted_proxies.contains(ip("127.0.0.1")));

        let node = load_node(
            "node:\n  trusted_proxies: [10.0.0.0/8, 192.0.2.7, '2001:db8::/32', '::1', '::ffff:198.51.100.1']\n",
        );
        let t = &node.trusted_proxies;
        assert_eq!(t.blocks().len(), 5);
        for yes in [
            "10.0.0.1",
            "10.255.255.255",
            "192.0.2.7",
            "2001:db8::1",
            "::1",
            // An IPv4 peer on a dual-stack listener, and the reverse.
            "::ffff:10.1.2.3",
            "198.51.100.1",
        ] {
            assert!(t.contains(ip(yes)), "{yes} should be trusted");
        }
        for no in ["11.0.0.1", "192.0.2.8", "2001:db9::1", "::2", "127.0.0.1"] {
            assert!(!t.contains(ip(no)), "{no} should not be trusted");
        }

        check(
            "node:\n  trusted_proxies: [10.0.0.0/8, nope, 10.0.0.1/8, '10.0.0.0/33', '']\n",
            &[
                (
                    "node.trusted_proxies[1]",
                    "invalid address \"nope\" (expected an IP address or a CIDR block",
                ),
                (
                    "node.trusted_proxies[2]",
                    "\"10.0.0.1/8\" has host bits set; write the network (10.0.0.0/8)",
                ),
                ("node.trusted_proxies[3]", "invalid address \"10.0.0.0/33\""),
                ("node.trusted_proxies[4]", "invalid address \"\""),
            ],
        );
        check(
            "node:\n  trusted_proxies: 10.0.0.0/8\n",
            &[("node.trusted_proxies", "invalid type")],
        );
    }

    #[test]
    fn host_port_forms() {
        for ok in [
            "10.0.0.1:9080",
            "[::1]:9080",
            "node-1.sluice.svc:9080",
            "localhost:1",
        ] {
            assert_eq!(check_host_port(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            ":9080",
            "host:0",
            "host:65536",
            "ho st:1",
            "::1:9080",
        ] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
    }
}
